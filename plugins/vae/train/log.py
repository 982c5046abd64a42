"""What a VAE run writes besides its checkpoint: log.csv (one row per logging interval or
test evaluation).  Its PNG grids of reconstructions and samples are drawn by
``gdl_studio.training.images``."""

from __future__ import annotations

import csv
from pathlib import Path

from gdl_studio.training.checkpoints import atomic_write_text

FIELDS = ("loss", "recon_nll", "kl", "neg_elbo", "beta", "lr", "test_neg_elbo", "test_mse", "img_s")


class RunLog:
    """log.csv with a fixed set of columns; a resumed run first drops the rows written after
    its checkpoint, so the file reads as one uninterrupted run."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.fields = ["step", "epoch", *FIELDS]

    def rows(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def truncate_after(self, step: int) -> None:
        rows = self.rows()
        if any(int(r["step"]) > step for r in rows):
            self._write([r for r in rows if int(r["step"]) <= step])

    def write(self, step: int, epoch: float, **values: float) -> None:
        row = {"step": str(step), "epoch": f"{epoch:.4f}"}
        row.update({k: f"{v:.6g}" for k, v in values.items()})
        self._write([*self.rows(), row])

    def _write(self, rows: list[dict[str, str]]) -> None:
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, self.fields, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(self.path, buf.getvalue())
