"""The history folder: every result is written here (atomically) before it is shown.

Nothing but the files themselves is kept: the provenance inside each file is the index, so a
studio killed at any moment shows every completed result again on restart.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gdl_studio.core.results import EXTENSIONS, Provenance, Result, read_provenance, save_result

_counter = itertools.count()


@dataclass(frozen=True)
class HistoryEntry:
    path: Path
    provenance: Provenance

    @property
    def kind(self) -> str:
        return self.provenance.kind


class History:
    """Results saved under ``folder`` as ``<time>-<plugin>.<ext>``, newest last."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def add(self, result: Result, prov: Provenance) -> HistoryEntry:
        """Save ``result`` with ``prov``; the entry exists on disk when this returns."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        # The counter keeps names unique within a second; the time keeps them sorted.
        name = f"{stamp}-{time.time_ns() % 10**9:09d}-{next(_counter):04d}-{prov.plugin}"
        path = self.folder / (name + EXTENSIONS[result.kind])
        save_result(result, prov, path)
        return HistoryEntry(path, prov)

    def entries(self, limit: int | None = None) -> list[HistoryEntry]:
        """Saved results, oldest first (the last ``limit`` when given); unreadable files are
        skipped, never deleted."""
        if not self.folder.is_dir():
            return []
        files = sorted(
            p for p in self.folder.iterdir()
            if p.suffix in EXTENSIONS.values() and not p.name.startswith(".")
        )  # fmt: skip
        out: list[HistoryEntry] = []
        # Newest first until `limit` readable entries are found, so junk files cost no slots.
        for path in reversed(files):
            if limit is not None and len(out) >= limit:
                break
            try:
                out.append(HistoryEntry(path, read_provenance(path)))
            except (OSError, ValueError, EOFError, KeyError, IndexError, TypeError):
                continue  # a damaged file is skipped, never deleted
        return out[::-1]

    @staticmethod
    def files_of(entry: HistoryEntry) -> list[Path]:
        """The entry's file, then its provenance sidecar where it has one (text results)."""
        sidecar = entry.path.with_name(entry.path.name + ".json")
        return [entry.path, *([sidecar] if sidecar.is_file() else [])]

    def remove(self, entry: HistoryEntry) -> None:
        for p in (entry.path, entry.path.with_name(entry.path.name + ".json")):
            p.unlink(missing_ok=True)

    def trash(self, entry: HistoryEntry, mover: Callable[[str], None] | None = None) -> None:
        """Move the entry's files to the system's trash, where the user can still get them
        back (Send2Trash: the freedesktop.org trash, the macOS Trash, the Windows Recycle
        Bin).  The result file goes first: should its sidecar then fail, what is left is a
        stray sidecar, which the history never lists.  Raises OSError when the result file
        cannot be moved, and then nothing has moved."""
        if mover is None:
            from send2trash import send2trash  # imported on use: a rare action

            mover = send2trash
        first, *sidecars = self.files_of(entry)
        mover(str(first))
        for path in sidecars:
            with contextlib.suppress(OSError):
                mover(str(path))
