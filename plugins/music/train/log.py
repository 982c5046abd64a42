"""log.csv: what a run leaves to read while it trains (training rows every ``--log-every``
steps, one row per validation)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

FIELDS = ("step", "epoch", "train_nll", "val_nll", "lr", "grad_norm", "tokens_per_s")


class RunLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def write(self, step: int, epoch: float, **values: float) -> None:
        row = {"step": step, "epoch": round(epoch, 4)}
        row.update({k: f"{v:.6g}" for k, v in values.items()})
        new = not self.path.is_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, FIELDS)
            if new:
                w.writeheader()
            w.writerow(row)

    def rows(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after the checkpoint a resumed run starts from."""
        rows = self.rows()
        if not any(int(r["step"]) > step for r in rows):
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, FIELDS)
            w.writeheader()
            w.writerows(r for r in rows if int(r["step"]) <= step)
        os.replace(tmp, self.path)
