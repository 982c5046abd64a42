"""The mask painter in a real window on a real X server (Xvfb): a painted stroke shows as a
red overlay over the photo, and only there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.gui

SCRIPT = textwrap.dedent(
    """
    import sys
    from PIL import Image
    from PySide6.QtCore import QPointF
    from PySide6.QtWidgets import QApplication
    from gdl_studio.qt.mask_painter import MaskPainter

    app = QApplication([])
    print("platform=" + app.platformName())
    dialog = MaskPainter(Image.new("RGB", (400, 200), (30, 140, 60)))
    dialog.resize(800, 500)
    dialog.show()
    app.processEvents()
    dialog.canvas.brush = 40
    dialog.canvas.stroke(QPointF(40, 100), QPointF(360, 100), erase=False)
    app.processEvents()
    dialog.canvas.grab().save(sys.argv[1])
    """
)


@pytest.mark.skipif(
    shutil.which("Xvfb") is None, reason="Xvfb is not installed (.ci/run installs it)"
)
def test_a_painted_stroke_is_shown_in_red_under_xvfb(xvfb, tmp_path: Path) -> None:
    out = tmp_path / "mask.png"
    env = dict(os.environ, QT_QPA_PLATFORM="xcb", DISPLAY=f":{xvfb.display}")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "platform=xcb" in proc.stdout
    shot = np.asarray(Image.open(out).convert("RGB")).astype(int)
    h = shot.shape[0]
    red = shot[..., 0] - shot[..., 1] > 20  # the photo is green: (30, 140, 60)
    rows = np.flatnonzero(red.any(axis=1))
    assert red.mean() > 0.02  # the stroke is there...
    assert rows.min() > h * 0.3 and rows.max() < h * 0.7  # ...across the middle only
    assert not red[: int(h * 0.25)].any()
