"""DeepDream in a real window on a real X server (Xvfb): the shipped model dreams on the
sample photo and the image canvas shows the dream."""

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
def test_a_dream_on_the_canvas_under_xvfb(xvfb, tmp_path: Path) -> None:
    shots = {}
    for label, extra in (("idle", ["--no-run"]), ("dream", [])):
        out = tmp_path / f"{label}.png"
        env = dict(os.environ, QT_QPA_PLATFORM="xcb", DISPLAY=f":{xvfb.display}")
        proc = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "screenshot.py"), "--out", str(out),
             "--plugin", "dream", "--set", "steps=3", "--set", "octaves=2",
             "--set", "size=240", "--set", "seed=1", "--size", "1000x700", *extra],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "platform=xcb" in proc.stdout
        shots[label] = np.asarray(Image.open(out).convert("RGB"))[:700, :1000].astype(int)
    # The dream (a colourful photo) fills part of the canvas that was empty before.
    changed = np.abs(shots["dream"] - shots["idle"]).sum(-1) > 40
    assert changed.mean() > 0.05
    colours = shots["dream"][changed]
    assert len(np.unique(colours // 16, axis=0)) > 100  # a photo, not a flat panel
