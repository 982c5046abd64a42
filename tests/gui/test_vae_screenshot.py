"""The VAE plugin's live latent map in a real window on a real X server (Xvfb): the map is
painted by the plugin's own canvas, and moving the mouse over it shows the decoded image."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures.vae_plugin import make_vae_plugin

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.gui


@pytest.mark.skipif(
    shutil.which("Xvfb") is None, reason="Xvfb is not installed (.ci/run installs it)"
)
def test_latent_map_with_live_decoding_under_xvfb(xvfb, tmp_path: Path) -> None:
    make_vae_plugin(tmp_path / "plugins")
    shots = {}
    for label, extra in (("map", []), ("hover", ["--hover", "0.62,0.41"])):
        out = tmp_path / f"{label}.png"
        env = dict(os.environ, QT_QPA_PLATFORM="xcb", DISPLAY=f":{xvfb.display}")
        proc = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "screenshot.py"), "--out", str(out),
             "--no-builtin", "--plugin-dir", str(tmp_path / "plugins"), "--plugin", "vae",
             "--model", "fashion28", "--set", "mode=map", "--set", "grid=12",
             "--size", "1000x700", *extra],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "platform=xcb" in proc.stdout
        if extra:
            assert "hovered LatentMapCanvas" in proc.stdout  # the plugin's canvas is shown
        shots[label] = np.asarray(Image.open(out).convert("RGB"))[:700, :1000].astype(int)
    window = shots["map"]
    grey = window[(window[..., 0] == window[..., 1]) & (window[..., 1] == window[..., 2])]
    assert len(np.unique(grey[:, 0])) > 64  # the decoded map: many grey levels
    # The hover preview (an enlarged image in a highlight frame, and its readout) appears.
    changed = np.abs(shots["hover"] - window).sum(-1) > 30
    assert changed.mean() > 0.005, "moving the mouse did not show a decoded image"
