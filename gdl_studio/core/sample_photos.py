"""Sample photos the image plugins fall back on when no photo is given (DeepDream, style
transfer), so that a first click shows something.  From scikit-image's data (see NOTICE):
chelsea and coffee are CC0, astronaut and rocket public domain."""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent.parent / "sample_photos"
NAMES = ("chelsea", "coffee", "astronaut", "rocket")


def sample_photo(name: str) -> Path:
    """The file of sample photo ``name``; ValueError for a name that is not one."""
    if name not in NAMES:
        raise ValueError(f"no sample photo {name!r} (there are {', '.join(NAMES)})")
    return FOLDER / f"{name}.jpg"


def all_sample_photos() -> list[Path]:
    return [sample_photo(n) for n in NAMES]
