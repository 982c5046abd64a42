"""Images a trainer writes while it trains: grids of samples in [-1, 1] as PNG files."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) roughly in [-1, 1] -> uint8 (N, H, W) or (N, H, W, 3)."""
    a = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    return a[:, 0] if a.shape[1] == 1 else a.transpose(0, 2, 3, 1)


def grid_image(x: torch.Tensor, columns: int, pad: int = 2, scale: int = 2) -> Image.Image:
    """A grid of images in [-1, 1], ``columns`` per row, on a dark background, enlarged
    ``scale`` times."""
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
    """Write a PNG atomically (a viewer polling the folder never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)
