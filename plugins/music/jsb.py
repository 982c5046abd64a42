"""The JSB chorales in the form of ``Jsb16thSeparated``: splits of [steps, 4] pitch grids.

The app reads the JSON edition (``Jsb16thSeparated.json``, -1 = silent), never the ``.npz``:
numpy stores the npz's ragged splits as pickles, and no code the app loads unpickles
(docs/reliability.md).  Given an ``.npz``, the JSON twin beside it is read instead; the two
hold the same chorales.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MAX_BYTES = 64 * 1024 * 1024


def json_twin(path: Path) -> Path:
    """``path`` itself for a .json file, else the .json beside it with the same name."""
    path = Path(path)
    return path if path.suffix.lower() == ".json" else path.with_suffix(".json")


def read_chorales(path: Path, splits: tuple[str, ...] = ("train", "valid")) -> dict[str, list]:
    """``{split: [grid, ...]}``, each grid a float [steps, 4] array of MIDI pitches (NaN:
    silent), from the JSON edition (:func:`json_twin`).  Raises ``ValueError`` naming what is
    wrong with the file."""
    path = json_twin(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ValueError(f"{path.name}: larger than {MAX_BYTES // 2**20} MB")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (the JSON edition of Jsb16thSeparated)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path.name}: not a Jsb16thSeparated .json ({exc})") from None
    out: dict[str, list] = {}
    for split in splits:
        pieces = data.get(split) if isinstance(data, dict) else None
        if not isinstance(pieces, list):
            raise ValueError(f"{path.name}: no {split!r} split")
        grids = []
        for i, piece in enumerate(pieces):
            try:
                g = np.asarray(piece, np.float64)
            except (TypeError, ValueError):
                g = np.zeros(0)
            if g.ndim != 2 or g.shape[1] != 4 or not np.isfinite(g).all():
                raise ValueError(f"{path.name}: {split} piece {i} is not a [steps, 4] grid")
            grids.append(np.where(g < 0, np.nan, g))
        out[split] = grids
    return out
