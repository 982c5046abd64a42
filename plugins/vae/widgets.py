"""The VAE plugin's Qt layer: the live latent map (see gdl_studio/qt/plugin_canvas.py for the
contract).  The map is drawn as a grid of decoded images; the point under the mouse is decoded
as the mouse moves (one decoder call, well under 10 ms for the shipped models, coalesced to
one per event-loop turn so a fast mouse never queues work); a click keeps that image in the
history (a ``point`` run, so it carries full provenance and can be made again from the CLI).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from PIL import Image
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QImage,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QPixmap,
)
from PySide6.QtWidgets import QMenu, QSizePolicy, QWidget

from gdl_studio.core.results import Provenance, Result

from .compute import VaeModel, format_point, fraction_of, map_points, point_at

PREVIEW_CELLS = 4  # the live image is drawn this many map cells wide
MARK = QColor(230, 40, 40)


def to_qimage(image: Image.Image) -> QImage:
    """A PIL image as a QImage that owns its pixels."""
    im = image.convert("RGB") if image.mode not in ("L", "RGB") else image
    fmt = QImage.Format.Format_Grayscale8 if im.mode == "L" else QImage.Format.Format_RGB888
    data = im.tobytes()
    return QImage(data, im.width, im.height, im.width * len(im.getbands()), fmt).copy()


def sheet_of(tiles: list[Image.Image], n: int) -> Image.Image:
    """n x n tiles edge to edge (no gaps: the plane is continuous, so is its picture)."""
    w, h = tiles[0].size
    mode = "RGB" if any(t.mode != "L" for t in tiles) else "L"
    sheet = Image.new(mode, (n * w, n * h))
    for i, tile in enumerate(tiles):
        sheet.paste(tile.convert(mode), ((i % n) * w, (i // n) * h))
    return sheet


class LatentMapCanvas(QWidget):
    """The map of a ``map`` or ``encode`` result: hover to decode, click to keep."""

    keep_requested = Signal(dict)  # the parameters of a run that makes the kept image
    save_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model: VaeModel | None = None
        self.grid = 15
        self.edge = 0.05
        self.marks: list[tuple[float, float]] = []
        self.insets: list[QPixmap] = []  # encode: the input and its reconstruction
        self._sheet: QPixmap | None = None
        self._hover: tuple[float, float] | None = None  # the map point under the mouse
        self._hover_image: QPixmap | None = None
        self._hover_pil: Image.Image | None = None
        self._pending: tuple[float, float] | None = None
        self.last_decode_ms = 0.0
        self.decodes = 0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._decode_pending)
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(64, 64)
        self.setCursor(Qt.CursorShape.CrossCursor)

    # -- the host's contract ----------------------------------------------------------------
    def show_result(self, result: Result, prov: Provenance, ctx: Any) -> bool:
        """Take ``map`` and ``encode`` results (their ``map`` extra says ``live``)."""
        info = prov.extra.get("map")
        if not isinstance(info, dict) or not info.get("live") or result.kind != "image":
            return False
        self.model = VaeModel(ctx)
        self.grid = int(info.get("grid", 15))
        self.edge = float(info.get("edge", 0.05))
        self.marks = [(float(p[0]), float(p[1])) for p in info.get("points", [])]
        n = self.grid
        if prov.params.get("mode") == "map" and len(result.images) == n * n:
            tiles = list(result.images)
        else:  # the map behind an encoded image: the same grid, decoded again
            tiles = self.model.images(self.model.projection.lift(map_points(n, self.edge)))
        self._sheet = QPixmap.fromImage(to_qimage(sheet_of(tiles, n)))
        self.insets = []
        if prov.params.get("mode") == "encode" and len(result.images) >= 2:
            size = self.model.size
            self.insets = [
                QPixmap.fromImage(to_qimage(im.resize((size, size), Image.Resampling.NEAREST)))
                for im in result.images[:2]
            ]
        self._hover = self._hover_image = None
        self.update()
        return True

    # -- geometry ---------------------------------------------------------------------------
    def sheet_rect(self) -> QRectF:
        """Where the map is drawn: as large as fits, square, centred, whole pixels per image
        pixel when it is enlarged (small images stay crisp)."""
        if self._sheet is None:
            return QRectF()
        side = self._sheet.width()
        avail = max(1, min(self.width(), self.height()) - 16)
        scale = avail / side
        if scale > 1 and int(scale) / scale >= 0.8:
            # Whole screen pixels per image pixel keep small images crisp, unless that
            # would leave much of the space empty.
            scale = float(int(scale))
        size = side * scale
        return QRectF((self.width() - size) / 2, (self.height() - size) / 2, size, size)

    def point_under(self, pos: QPointF) -> tuple[float, float] | None:
        """The map point under a widget position, or None outside the map."""
        rect = self.sheet_rect()
        if rect.isEmpty() or not rect.contains(pos):
            return None
        fx = (pos.x() - rect.x()) / rect.width()
        fy = (pos.y() - rect.y()) / rect.height()
        return point_at(fx, fy, self.grid, self.edge)

    def position_of(self, u: float, v: float) -> QPointF:
        rect = self.sheet_rect()
        fx, fy = fraction_of(u, v, self.grid, self.edge)
        fx, fy = min(max(fx, 0.0), 1.0), min(max(fy, 0.0), 1.0)
        return QPointF(rect.x() + fx * rect.width(), rect.y() + fy * rect.height())

    # -- live decoding ----------------------------------------------------------------------
    def hover(self, pos: QPointF) -> None:
        """Decode the point under ``pos`` (at the next turn of the event loop)."""
        self._pending = self.point_under(pos)
        if self._pending is None:
            self._hover = self._hover_image = None
            self.update()
            return
        self._timer.start()

    def _decode_pending(self) -> None:
        if self._pending is None or self.model is None:
            return
        uv, self._pending = self._pending, None
        t = time.perf_counter()
        image = self.model.images(self.model.projection.lift(np.array([uv])))[0]
        self.last_decode_ms = (time.perf_counter() - t) * 1000
        self.decodes += 1
        self._hover, self._hover_image = uv, QPixmap.fromImage(to_qimage(image))
        self._hover_pil = image
        self.update()

    def hover_image(self) -> Image.Image | None:
        """The image decoded under the cursor (None when the cursor is off the map)."""
        return self._hover_pil if self._hover_image is not None else None

    def keep(self, uv: tuple[float, float]) -> None:
        self.keep_requested.emit(
            {
                "mode": "point",
                "point": format_point(uv),
                "image": "",
                "grid": self.grid,
                "edge": self.edge,
            }
        )

    # -- input ------------------------------------------------------------------------------
    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        self.hover(event.position())
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        uv = self.point_under(event.position())
        if event.button() == Qt.MouseButton.LeftButton and uv is not None:
            self.keep(uv)
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def leaveEvent(self, event: Any) -> None:
        self._pending = self._hover = self._hover_image = None
        self.update()
        super().leaveEvent(event)

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        menu = QMenu(self)
        uv = self.point_under(QPointF(event.pos()))
        keep = menu.addAction("Keep this image (click)")
        keep.setEnabled(uv is not None)
        if uv is not None:
            keep.triggered.connect(lambda: self.keep(uv))
        menu.addAction("Save the result…").triggered.connect(self.save_requested.emit)
        menu.exec(event.globalPos())
        menu.deleteLater()

    # -- painting ---------------------------------------------------------------------------
    def sizeHint(self) -> QSize:
        return QSize(600, 600)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        palette = self.palette()
        painter.fillRect(self.rect(), palette.color(QPalette.ColorRole.Window).darker(115))
        if self._sheet is None:
            return
        rect = self.sheet_rect()
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        painter.drawPixmap(rect, self._sheet, QRectF(self._sheet.rect()))
        cell = rect.width() / self.grid
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        for u, v in self.marks:  # encoded images, morph ends
            painter.setPen(QPen(MARK, 3))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            r = max(4.0, cell / 3)
            painter.drawEllipse(self.position_of(u, v), r, r)
        for i, inset in enumerate(self.insets):  # encode: input, reconstruction
            side = min(cell * 2, 128.0)
            target = QRectF(rect.x() + 6 + i * (side + 6), rect.y() + 6, side, side)
            painter.fillRect(target.adjusted(-2, -2, 2, 2), QColor(255, 255, 255))
            painter.drawPixmap(target, inset, QRectF(inset.rect()))
        if self._hover is not None and self._hover_image is not None:
            self._paint_hover(painter, rect, cell)

    def _paint_hover(self, painter: QPainter, rect: QRectF, cell: float) -> None:
        """The decoded image beside the cursor, enlarged, with its map point."""
        assert self._hover is not None and self._hover_image is not None
        at = self.position_of(*self._hover)
        side = min(max(cell * PREVIEW_CELLS, 96.0), rect.width() / 2)
        x = at.x() + 16 if at.x() + 16 + side <= rect.right() else at.x() - 16 - side
        y = min(max(at.y() - side / 2, rect.top()), rect.bottom() - side)
        target = QRectF(x, y, side, side)
        painter.setPen(QPen(palette_highlight(self), 2))
        painter.drawLine(QPointF(at.x() - 6, at.y()), QPointF(at.x() + 6, at.y()))
        painter.drawLine(QPointF(at.x(), at.y() - 6), QPointF(at.x(), at.y() + 6))
        painter.fillRect(target.adjusted(-3, -3, 3, 3), palette_highlight(self))
        painter.drawPixmap(target, self._hover_image, QRectF(self._hover_image.rect()))
        u, v = self._hover
        text = f"u {u:+.2f}  v {v:+.2f}  ·  {self.last_decode_ms:.1f} ms  ·  click to keep"
        metrics = painter.fontMetrics()
        box = QRectF(x, y + side + 4, metrics.horizontalAdvance(text) + 8, metrics.height() + 4)
        painter.fillRect(box, QColor(0, 0, 0, 170))
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)


def palette_highlight(widget: QWidget) -> QColor:
    return widget.palette().color(QPalette.ColorRole.Highlight)
