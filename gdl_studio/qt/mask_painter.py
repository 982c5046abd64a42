"""Paint a mask over a photo: white where a plugin should work (the style goes, a model
repaints), black where the photo stays.  Used by every ``mask`` parameter (the panel's
"Paint…" button); the mask is saved as a greyscale PNG of the photo's size and the parameter
points at it, so the CLI and the history see an ordinary mask file.

Qt's own QPainter does the brush work: strokes are drawn as round-capped lines between mouse
positions on a greyscale QImage at the photo's resolution, and shown as a red overlay."""

from __future__ import annotations

from PIL import Image
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

OVERLAY = QColor(255, 40, 40)
OVERLAY_OPACITY = 0.5


def to_qimage(image: Image.Image) -> QImage:
    rgb = image.convert("RGB")
    data = rgb.tobytes()
    q = QImage(data, rgb.width, rgb.height, rgb.width * 3, QImage.Format.Format_RGB888)
    return q.copy()  # own the pixels: `data` goes away


class MaskCanvas(QWidget):
    """The photo, fitted to the widget, with the mask painted over it in red."""

    painted = Signal()

    def __init__(self, photo: Image.Image, mask: Image.Image | None = None,
                 parent: QWidget | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.photo = to_qimage(photo)
        self.mask = QImage(self.photo.size(), QImage.Format.Format_Grayscale8)
        self.mask.fill(0)
        if mask is not None:
            grey = mask.convert("L").resize((photo.width, photo.height))
            self.mask = QImage(grey.tobytes(), grey.width, grey.height, grey.width,
                               QImage.Format.Format_Grayscale8).copy()  # fmt: skip
        self.brush = 40  # px of the photo
        self.erasing = False
        self._last: QPointF | None = None
        self._erase_stroke = False
        self.setMinimumSize(320, 240)
        self.setCursor(Qt.CursorShape.CrossCursor)

    # -- geometry: the photo fitted and centred in the widget --------------------------------
    def _target(self) -> QRectF:
        w, h = self.photo.width(), self.photo.height()
        scale = min(self.width() / w, self.height() / h)
        return QRectF((self.width() - w * scale) / 2, (self.height() - h * scale) / 2,
                      w * scale, h * scale)  # fmt: skip

    def to_image(self, pos: QPointF) -> QPointF:
        t = self._target()
        return QPointF((pos.x() - t.x()) * self.photo.width() / t.width(),
                       (pos.y() - t.y()) * self.photo.height() / t.height())  # fmt: skip

    # -- painting ---------------------------------------------------------------------------
    def stroke(self, a: QPointF, b: QPointF, erase: bool) -> None:
        """A round brush line from ``a`` to ``b`` (photo pixels) on the mask."""
        painter = QPainter(self.mask)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pen = QPen(QColor(0, 0, 0) if erase else QColor(255, 255, 255), self.brush)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        painter.setPen(pen)
        painter.drawLine(a, b)
        painter.end()
        self.update()
        self.painted.emit()

    def clear(self) -> None:
        self.mask.fill(0)
        self.update()
        self.painted.emit()

    def invert(self) -> None:
        self.mask.invertPixels()
        self.update()
        self.painted.emit()

    def mask_image(self) -> Image.Image:
        """The mask as a Pillow 'L' image of the photo's size."""
        m = self.mask.convertToFormat(QImage.Format.Format_Grayscale8)
        w, h, stride = m.width(), m.height(), m.bytesPerLine()
        raw = bytes(m.constBits())[: stride * h]
        return Image.frombytes("L", (w, h), raw, "raw", "L", stride)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            self._erase_stroke = self.erasing or event.button() == Qt.MouseButton.RightButton
            self._last = self.to_image(event.position())
            self.stroke(self._last, self._last, self._erase_stroke)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._last is not None:
            here = self.to_image(event.position())
            self.stroke(self._last, here, self._erase_stroke)
            self._last = here

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self._last = None

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().window())
        target = self._target()
        painter.drawImage(target, self.photo)
        overlay = QImage(self.mask.size(), QImage.Format.Format_ARGB32)
        overlay.fill(OVERLAY)
        overlay.setAlphaChannel(self.mask)  # the mask's grey levels become the red's alpha
        painter.setOpacity(OVERLAY_OPACITY)
        painter.drawImage(target, overlay)
        painter.end()


class MaskPainter(QDialog):
    """The dialog: the canvas, brush size, erase, clear, invert; OK keeps the mask."""

    def __init__(self, photo: Image.Image, mask: Image.Image | None = None,
                 parent: QWidget | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.setWindowTitle("Paint a mask — white: the plugin works there")
        self.canvas = MaskCanvas(photo, mask)
        self.size_slider = QSlider(Qt.Orientation.Horizontal)
        longest = max(photo.size)
        self.size_slider.setRange(max(1, longest // 200), max(2, longest // 3))
        self.size_slider.setValue(max(1, min(longest // 10, self.size_slider.maximum())))
        self.canvas.brush = self.size_slider.value()
        self.size_slider.valueChanged.connect(lambda v: setattr(self.canvas, "brush", v))
        self.erase = QCheckBox("Erase (or drag with the right button)")
        self.erase.toggled.connect(lambda on: setattr(self.canvas, "erasing", on))
        clear = QPushButton("Clear")
        clear.clicked.connect(self.canvas.clear)
        invert = QPushButton("Invert")
        invert.clicked.connect(self.canvas.invert)
        tools = QHBoxLayout()
        tools.addWidget(QLabel("Brush"))
        tools.addWidget(self.size_slider, 1)
        tools.addWidget(self.erase)
        tools.addWidget(clear)
        tools.addWidget(invert)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.canvas, 1)
        layout.addLayout(tools)
        layout.addWidget(buttons)
        self.resize(900, 700)

    def mask(self) -> Image.Image:
        return self.canvas.mask_image()
