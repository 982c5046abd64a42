"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.

    If anything fails (a full disk, an exception in ``write``), the temporary file is removed
    and any previous ``path`` is left untouched; the error propagates to the caller.
    """
    path = Path(path)
    tmp = _staged(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_files(files: Sequence[tuple[Path, bytes]]) -> list[Path]:
    """Write several files that belong together (a result and its sidecar): all of them are
    written and synced first, then renamed into place in order.  A full disk therefore leaves
    every previous file as it was, not a new sidecar beside an old result."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files:
            staged.append((_staged(Path(path), _writer(data)), Path(path)))
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    return [path for _, path in staged]


def _writer(data: bytes) -> Callable[[IO[bytes]], object]:
    return lambda fh: fh.write(data)


def _staged(path: Path, write: Callable[[IO[bytes]], object]) -> str:
    """The name of a synced temporary file beside ``path`` holding what ``write`` wrote."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def unused_path(folder: Path, stem: str, suffix: str) -> Path:
    """``folder/stem.suffix``, or ``stem-2.suffix``, ``stem-3.suffix``... whichever does not
    exist yet: for files the studio writes beside the user's (styled photos, painted masks,
    drawn melodies), which must never replace one."""
    path = Path(folder) / f"{stem}{suffix}"
    n = 1
    while path.exists():
        n += 1
        path = Path(folder) / f"{stem}-{n}{suffix}"
    return path
