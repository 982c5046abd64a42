"""Live-preview frame cost of the image canvas: replacing a batch of images (as a diffusion
or GAN job streams them) and repainting, offscreen.  A frame well under 20 ms keeps previews
at the 50 Hz a screen shows.

    .venv/bin/python benchmarks/canvas_preview.py [--batch 64] [--size 32] [--frames 50]
        [--json] [--write-docs]

Moved here from the tests: a time limit in a pass/fail test fails on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import median_p90, report  # beside this script (benchmarks/ is not a package)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=32, help="pixels per image side")
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image
    from PySide6.QtWidgets import QApplication

    from gdl_studio.qt.canvases.image_canvas import ImageCanvas

    app = QApplication([])
    canvas = ImageCanvas()
    canvas.resize(800, 800)
    canvas.show()
    app.processEvents()
    frames = [
        [
            Image.new("RGB", (args.size, args.size), (i * 4 % 256, f % 256, 0))
            for i in range(args.batch)
        ]
        for f in range(args.frames + 2)
    ]
    times = []
    for i, batch in enumerate(frames):
        t0 = time.perf_counter()
        canvas.show_preview(batch)
        canvas.repaint()
        if i >= 2:  # the first frames lay the grid out
            times.append((time.perf_counter() - t0) * 1000)
    median, p90 = median_p90(times, 2)
    out = {
        "batch": args.batch,
        "size": args.size,
        "frame_ms_median": median,
        "frame_ms_p90": p90,
        "frames": args.frames,
    }
    command = (
        f"python benchmarks/canvas_preview.py --batch {args.batch} --size {args.size} "
        f"--frames {args.frames} --write-docs"
    )
    report(out, args.json, args.write_docs, "canvas preview frame", command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
