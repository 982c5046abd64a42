"""The GAN trainers' own helpers: the loss log (losses.csv and a loss plot drawn with
Pillow).  What every trainer needs (errors, torch.distributed, checkpoints, sample grids) is
in ``gdl_studio.training``."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from gdl_studio.training.images import save_png

# ------------------------------------------------------------------------------- loss log


class LossLog:
    """losses.csv (one row per logging interval, means over the interval) and a loss-curve
    PNG redrawn from it."""

    def __init__(self, path: Path, fields: Sequence[str]) -> None:
        self.path = Path(path)
        self.fields = ["step", "epoch", *fields]
        self._sums: dict[str, float] = {}
        self._count = 0

    def truncate_after(self, step: int) -> None:
        """Drop rows past ``step`` (logged after the checkpoint a resumed run starts from)."""
        rows = self.rows()
        if rows and any(int(r["step"]) > step for r in rows):
            self._write_all([r for r in rows if int(r["step"]) <= step])

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self._sums[k] = self._sums.get(k, 0.0) + float(v)
        self._count += 1

    def flush(self, step: int, epoch: float) -> dict[str, float] | None:
        """Append the interval's means as one row; None when nothing was added."""
        if not self._count:
            return None
        means = {k: v / self._count for k, v in self._sums.items()}
        self._sums, self._count = {}, 0
        row = {"step": step, "epoch": round(epoch, 4)}
        row.update({k: round(means.get(k, float("nan")), 6) for k in self.fields[2:]})
        new = not self.path.is_file()
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, self.fields)
            if new:
                w.writeheader()
            w.writerow(row)
        return means

    def rows(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def _write_all(self, rows: list[dict[str, str]]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, self.fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, self.path)

    def plot(self, png: Path, series: Sequence[str]) -> None:
        """Draw ``series`` against step (Pillow only: no matplotlib in the train extra)."""
        save_png(plot_curves(self.rows(), series), png)


COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14))


def plot_curves(
    rows: Sequence[dict[str, str]], series: Sequence[str], size: tuple[int, int] = (720, 400)
) -> Image.Image:
    """A line plot of the named CSV columns against ``step``."""
    w, h = size
    left, right, top, bottom = 64, 16, 28, 36
    im = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(im)
    pts: dict[str, list[tuple[float, float]]] = {}
    for name in series:
        pts[name] = []
        for r in rows:
            try:
                x, y = float(r["step"]), float(r[name])
            except (KeyError, TypeError, ValueError):
                continue
            if math.isfinite(y):
                pts[name].append((x, y))
    xs = [p[0] for v in pts.values() for p in v]
    ys = [p[1] for v in pts.values() for p in v]
    draw.rectangle([left, top, w - right, h - bottom], outline=(0, 0, 0))
    if not xs:
        draw.text((left + 8, top + 8), "no losses logged yet", fill=(0, 0, 0))
        return im
    x0, x1 = min(xs), max(xs)
    # Robust y-range: early spikes would otherwise flatten the rest of the curve.
    y0, y1 = float(np.percentile(ys, 1)), float(np.percentile(ys, 99))
    if x1 == x0:
        x1 = x0 + 1
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 1, y1 + 1
    pad = 0.05 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (w - left - right)

    def sy(y: float) -> float:
        y = min(max(y, y0), y1)
        return h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom)

    if y0 < 0 < y1:
        draw.line([(left, sy(0)), (w - right, sy(0))], fill=(200, 200, 200))
    for i, (name, p) in enumerate(pts.items()):
        colour = COLOURS[i % len(COLOURS)]
        if len(p) > 1:
            draw.line([(sx(x), sy(y)) for x, y in p], fill=colour, width=2)
        elif p:
            draw.ellipse(
                [sx(p[0][0]) - 2, sy(p[0][1]) - 2, sx(p[0][0]) + 2, sy(p[0][1]) + 2], fill=colour
            )
        draw.text((left + 8 + 110 * i, 8), name, fill=colour)
    for y in (y0, y1):
        draw.text((4, sy(y) - 6), f"{y:.3g}", fill=(0, 0, 0))
    draw.text((left, h - bottom + 6), f"{x0:.0f}", fill=(0, 0, 0))
    draw.text((w - right - 60, h - bottom + 6), f"step {x1:.0f}", fill=(0, 0, 0))
    return im
