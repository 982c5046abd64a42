"""Painting a mask over a photo (offscreen): strokes, erasing, clear/invert, and the panel's
"Paint…" button saving the mask and filling the mask parameter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtWidgets import QDialog

from gdl_studio.core.params import ParamSpec
from gdl_studio.qt import param_panel
from gdl_studio.qt.mask_painter import MaskCanvas, MaskPainter
from gdl_studio.qt.param_panel import FilePicker, ParamPanel


def photo(size: tuple[int, int] = (200, 100)) -> Image.Image:
    return Image.new("RGB", size, (40, 120, 200))


def drag(qtbot, canvas: MaskCanvas, a: QPointF, b: QPointF,
         button: Qt.MouseButton = Qt.MouseButton.LeftButton) -> None:  # fmt: skip
    """A drag from image point ``a`` to ``b`` (photo pixels), in widget coordinates."""
    t = canvas._target()
    scale = t.width() / canvas.photo.width()

    def at(p: QPointF) -> QPoint:
        return QPoint(round(t.x() + p.x() * scale), round(t.y() + p.y() * scale))

    qtbot.mousePress(canvas, button, pos=at(a))
    for f in np.linspace(0, 1, 8):
        qtbot.mouseMove(canvas, at(a + (b - a) * float(f)))
    qtbot.mouseRelease(canvas, button, pos=at(b))


def test_strokes_paint_white_and_the_right_button_erases(qtbot) -> None:
    dialog = MaskPainter(photo())
    qtbot.addWidget(dialog)
    dialog.resize(800, 600)
    dialog.show()
    qtbot.waitExposed(dialog)
    canvas = dialog.canvas
    dialog.size_slider.setValue(10)
    drag(qtbot, canvas, QPointF(20, 50), QPointF(180, 50))
    mask = np.asarray(dialog.mask())
    assert mask.shape == (100, 200)  # the photo's size, whatever the widget's
    assert mask[50, 30:170].min() > 200  # along the stroke
    assert mask[5:30].max() == 0 and mask[75:].max() == 0  # nowhere else
    drag(qtbot, canvas, QPointF(100, 20), QPointF(100, 80), Qt.MouseButton.RightButton)
    mask = np.asarray(dialog.mask())
    assert mask[50, 100] == 0 and mask[50, 40] > 200  # a gap erased in the middle
    canvas.invert()
    assert np.asarray(dialog.mask())[10, 10] == 255
    canvas.clear()
    assert np.asarray(dialog.mask()).max() == 0


def test_an_existing_mask_is_shown_and_kept(qtbot) -> None:
    old = Image.new("L", (50, 25), 0)
    old.paste(255, (0, 0, 25, 25))  # left half, at another size: stretched to the photo
    canvas = MaskCanvas(photo(), old)
    qtbot.addWidget(canvas)
    mask = np.asarray(canvas.mask_image())
    assert mask[50, 20] == 255 and mask[50, 180] == 0


def test_the_panels_paint_button_saves_a_mask_and_fills_the_parameter(
    qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "photo.png"
    photo((120, 80)).save(src)
    panel = ParamPanel((ParamSpec(name="image", type="image"), ParamSpec(name="mask", type="mask")))
    qtbot.addWidget(panel)
    panel.mask_folder = tmp_path / "masks"
    panel.set_value("image", str(src))
    seen: list[tuple[int, int]] = []

    def paint_and_accept(self: MaskPainter) -> int:
        seen.append(self.canvas.photo.size().toTuple())
        self.canvas.brush = 20
        self.canvas.stroke(QPointF(0, 40), QPointF(120, 40), erase=False)
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(MaskPainter, "exec", paint_and_accept)
    picker = panel.editors["mask"]
    assert isinstance(picker, FilePicker)
    picker.paint_requested.emit()
    assert seen == [(120, 80)]  # painted over the photo parameter's image
    saved = Path(panel.value("mask"))
    assert saved.parent == tmp_path / "masks" and saved.suffix == ".png"
    with Image.open(saved) as m:
        assert m.mode == "L" and m.size == (120, 80)
        assert np.asarray(m)[40, 60] == 255 and np.asarray(m)[5, 60] == 0

    # Cancel changes nothing; a second mask never overwrites the first.
    monkeypatch.setattr(MaskPainter, "exec", lambda self: QDialog.DialogCode.Rejected)
    picker.paint_requested.emit()
    assert Path(panel.value("mask")) == saved
    monkeypatch.setattr(MaskPainter, "exec", paint_and_accept)
    picker.paint_requested.emit()
    assert Path(panel.value("mask")) != saved and saved.is_file()


def test_without_a_photo_the_canvas_image_is_used_or_the_user_is_told(
    qtbot, monkeypatch: pytest.MonkeyPatch
) -> None:
    panel = ParamPanel((ParamSpec(name="mask", type="mask"),))
    qtbot.addWidget(panel)
    told: list[str] = []
    monkeypatch.setattr(param_panel.QMessageBox, "information",
                        lambda *a: told.append(a[2]))  # fmt: skip
    panel.paint_mask("mask")
    assert told and "Set the photo first" in told[0]
    sizes: list[tuple[int, int]] = []
    shown = lambda self: sizes.append(self.canvas.photo.size().toTuple()) or 0  # noqa: E731
    monkeypatch.setattr(MaskPainter, "exec", shown)
    panel.photo_provider = lambda: photo((64, 48))
    panel.paint_mask("mask")
    assert sizes == [(64, 48)]
