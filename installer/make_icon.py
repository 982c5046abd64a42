"""Draw the GDL Studio application icon with Pillow: a rounded tile holding a 4×4 grid of
cells that fade from noise-grey into colour, the "latent → image" idea in one picture.

    python installer/make_icon.py [OUT_DIR]

Writes gdl-studio.png (256 px, for the Linux .desktop entry), gdl-studio.ico (Windows, 16–256
px) and gdl-studio.icns (macOS) into OUT_DIR (default build/installer/icons); build.py calls it,
so this script is the icon's source and no image file is kept in the repository.  Drawn at 4×
and scaled down, so the edges are smooth at every size.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 256
SCALE = 4
BACKGROUND = (30, 41, 59)  # slate
PALETTE = [(59, 130, 246), (16, 185, 129), (245, 158, 11), (236, 72, 153)]  # the kind colours


def draw(size: int = SIZE) -> Image.Image:
    """The icon at ``size`` pixels (RGBA)."""
    big = size * SCALE
    im = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    margin = big // 16
    d.rounded_rectangle(
        (margin, margin, big - margin, big - margin), radius=big // 5, fill=BACKGROUND
    )
    rng = random.Random(11)  # fixed: the icon is the same on every build
    cells, pad = 4, big // 5
    step = (big - 2 * pad) / cells
    gap = step * 0.12
    for row in range(cells):
        for col in range(cells):
            # Top-left cells are grey noise, bottom-right ones saturated colour.
            t = (row + col) / (2 * (cells - 1))
            grey = rng.randint(90, 160)
            r, g, b = PALETTE[(row * cells + col) % len(PALETTE)]
            colour = tuple(round(grey * (1 - t) + c * t) for c in (r, g, b))
            x0, y0 = pad + col * step + gap, pad + row * step + gap
            d.rounded_rectangle(
                (x0, y0, x0 + step - 2 * gap, y0 + step - 2 * gap),
                radius=step / 6,
                fill=(*colour, 255),
            )
    return im.resize((size, size), Image.Resampling.LANCZOS)


def write_all(out_dir: Path) -> dict[str, Path]:
    """Write the .png, .ico and .icns icons into ``out_dir``; return them by suffix."""
    out_dir.mkdir(parents=True, exist_ok=True)
    icon = draw(SIZE)
    paths = {ext: out_dir / f"gdl-studio.{ext}" for ext in ("png", "ico", "icns")}
    icon.save(paths["png"], optimize=True)
    icon.save(paths["ico"], sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)])
    draw(512).save(paths["icns"])  # Pillow writes every .icns size from one large image
    return paths


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "build" / "installer" / "icons"
    for path in write_all(out).values():
        print(path)
