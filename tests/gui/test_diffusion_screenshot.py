"""Diffusion in a real window on a real X server (Xvfb): the shipped model denoises a batch
and the image canvas shows the grid of samples."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.gui


@pytest.mark.skipif(
    shutil.which("Xvfb") is None, reason="Xvfb is not installed (.ci/run installs it)"
)
def test_denoised_samples_on_the_canvas_under_xvfb(xvfb, tmp_path: Path) -> None:
    shots = {}
    for label, extra in (("idle", ["--no-run"]), ("samples", [])):
        out = tmp_path / f"{label}.png"
        env = dict(os.environ, QT_QPA_PLATFORM="xcb", DISPLAY=f":{xvfb.display}")
        proc = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "screenshot.py"), "--out", str(out),
             "--plugin", "diffusion", "--set", "steps=20", "--set", "batch=4",
             "--set", "seed=3", "--size", "1000x700", *extra],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "platform=xcb" in proc.stdout
        shots[label] = np.asarray(Image.open(out).convert("L"))[:700, :1000].astype(int)
    # Four grey garments fill part of the canvas that was empty before: many grey levels
    # (shading, not a flat panel or two-tone noise).
    changed = np.abs(shots["samples"] - shots["idle"]) > 40
    assert changed.mean() > 0.03
    assert len(np.unique(shots["samples"][changed] // 8)) > 12
