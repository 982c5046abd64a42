"""What a VAE run writes besides its checkpoint: log.csv (one row per logging interval or
test evaluation) and PNG grids of reconstructions and samples."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

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


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) roughly in [-1, 1] -> uint8 (N, H, W) or (N, H, W, 3)."""
    a = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    return a[:, 0] if a.shape[1] == 1 else a.transpose(0, 2, 3, 1)


def grid_image(x: torch.Tensor, columns: int, pad: int = 2, scale: int = 2) -> Image.Image:
    """A grid of images in [-1, 1], ``columns`` per row, on a dark background, enlarged."""
    imgs = to_uint8(x)
    n, h, w = imgs.shape[:3]
    rows = math.ceil(n / columns)
    colour = imgs.ndim == 4
    shape = (rows * (h + pad) + pad, columns * (w + pad) + pad) + ((3,) if colour else ())
    canvas = np.full(shape, 32, np.uint8)
    for i, im in enumerate(imgs):
        r, c = divmod(i, columns)
        y, x0 = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y : y + h, x0 : x0 + w] = im
    out = Image.fromarray(canvas, "RGB" if colour else "L")
    return out.resize((out.width * scale, out.height * scale), Image.Resampling.NEAREST)


def save_png(image: Image.Image, path: Path) -> None:
    """Write a PNG through a temporary name (a viewer polling the folder never sees half)."""
    import io
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)
