"""Finding a General MIDI SoundFont (.sf2) to play MIDI with."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from gdl_studio.core.config import Paths

# Fonts that cover all 128 General MIDI programs and the drum kit, best first.
WELL_KNOWN = ("fluidr3_gm", "timgm6mb", "musescore_general", "generaluser", "default-gm")


def _soundfont_folder() -> Path:
    return Paths.default().soundfonts


HOW_TO_ADD_SOUNDFONT = (
    "MIDI playback needs a General MIDI SoundFont (.sf2). Install one "
    "(e.g. `sudo apt install timgm6mb-soundfont` or `fluid-soundfont-gm`), or put any "
    f"General MIDI .sf2 file in {_soundfont_folder()}, or use Settings → Choose SoundFont…."
)


def system_soundfont_dirs() -> list[Path]:
    """The folders where this platform's packages and users usually keep SoundFonts."""
    home = Path.home()
    if sys.platform == "darwin":
        return [home / "Library/Audio/Sounds/Banks", Path("/Library/Audio/Sounds/Banks")]
    if sys.platform == "win32":
        appdata = Path(os.environ.get("APPDATA", home / "AppData/Roaming"))
        return [appdata / "soundfonts", home / "soundfonts"]
    return [
        Path("/usr/share/sounds/sf2"),
        Path("/usr/share/soundfonts"),
        Path("/usr/share/sounds/sf3"),  # mostly .sf3, which is skipped; any .sf2 there is used
        Path("/usr/local/share/soundfonts"),
        home / ".local/share/soundfonts",
        home / ".fluidsynth",
    ]


def _rank(path: Path) -> tuple[int, str]:
    stem = path.stem.lower()
    for i, name in enumerate(WELL_KNOWN):
        if stem.startswith(name):
            return i, stem
    return len(WELL_KNOWN), stem


def find_soundfonts(extra_dirs: Iterable[Path] = ()) -> list[Path]:
    """Every readable .sf2 file in the usual places, the studio's folder and ``extra_dirs``.

    Only .sf2: TinySoundFont cannot read compressed .sf3 fonts. Duplicates (including symlinks
    such as Debian's default-GM.sf2) are listed once; well-known GM fonts come first.
    """
    dirs = [*extra_dirs, _soundfont_folder(), *system_soundfont_dirs()]
    found: dict[Path, Path] = {}  # resolved -> as found
    for folder in dirs:
        try:
            entries = sorted(Path(folder).iterdir())
        except OSError:
            continue
        for path in entries:
            if path.suffix.lower() != ".sf2":
                continue
            try:
                real = path.resolve(strict=True)
                if not real.is_file():
                    continue
            except OSError:
                continue
            found.setdefault(real, path)
    return sorted(found.values(), key=_rank)


def choose_soundfont(configured: str | None) -> Path | None:
    """The configured SoundFont if it still exists, else the best one found, else None."""
    if configured:
        path = Path(configured).expanduser()
        if path.is_file():
            return path
    fonts = find_soundfonts()
    return fonts[0] if fonts else None
