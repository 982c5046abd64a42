"""A real window on a real X server (Xvfb, started by pytest-xvfb): screenshot and check it."""

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
def test_main_window_screenshot_under_xvfb(xvfb, plugin_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="xcb", DISPLAY=f":{xvfb.display}")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "screenshot.py"), "--out", str(out),
         "--no-builtin", "--plugin-dir", str(plugin_root), "--plugin", "tinygen",
         "--set", "batch=16", "--size", "1000x700"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "platform=xcb" in proc.stdout  # a real X window, not the offscreen platform
    shot = np.asarray(Image.open(out).convert("RGB"))
    window = shot[:700, :1000]
    # A painted window: many distinct colours, not a blank or single-colour screen.
    assert len(np.unique(window.reshape(-1, 3), axis=0)) > 50
    # The 16 generated greyscale cells are in the canvas: plenty of grey pixels of many levels.
    grey = window[(window[..., 0] == window[..., 1]) & (window[..., 1] == window[..., 2])]
    assert len(np.unique(grey[:, 0])) > 64


@pytest.mark.skipif(
    shutil.which("Xvfb") is None, reason="Xvfb is not installed (.ci/run installs it)"
)
@pytest.mark.parametrize("plugin", ["echo", "scale"])
def test_text_and_piano_roll_canvases_paint_under_xvfb(
    xvfb, plugin_root: Path, tmp_path: Path, plugin: str
) -> None:
    """The text canvas (echo) and the piano roll (scale) in a real X window: the result
    region of the window changes from the empty placeholder to painted content."""
    shots = {}
    for label, extra in (("empty", ["--no-run"]), ("done", [])):
        out = tmp_path / f"{plugin}-{label}.png"
        env = dict(os.environ, QT_QPA_PLATFORM="xcb", DISPLAY=f":{xvfb.display}")
        proc = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "screenshot.py"), "--out", str(out),
             "--no-builtin", "--plugin-dir", str(plugin_root), "--plugin", plugin,
             "--size", "1000x700", *extra],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "platform=xcb" in proc.stdout
        shots[label] = np.asarray(Image.open(out).convert("RGB"))[:700, :1000].astype(int)
    # The canvas sits right of the side panel: compare that region only.
    changed = np.abs(shots["done"][100:600, 400:900] - shots["empty"][100:600, 400:900]).sum(-1)
    assert (changed > 30).mean() > 0.01, "the canvas looks the same before and after the run"
