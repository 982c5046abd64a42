"""A zoomable, pannable canvas that shows one image or a grid of a batch."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image
from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QGuiApplication,
    QImage,
    QKeyEvent,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QPixmap,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QMenu, QSizePolicy, QWidget

from gdl_studio.core.cells import Quiz

_MIN_ZOOM = 0.02
_MAX_ZOOM = 128.0
_ZOOM_STEP = 1.25  # per wheel notch or key press
_MARGIN = 8  # px left around the content by fit()
_KEEP_VISIBLE = 32  # px of content that panning can never push off screen
_CLICK_SLOP = 4  # px a press may move and still count as a click rather than a pan
_FRAME = 3  # selection frame width in screen px

# PIL mode -> (QImage format, bytes per pixel) for the modes Qt can take without conversion.
_FORMATS: dict[str, tuple[QImage.Format, int]] = {
    "L": (QImage.Format.Format_Grayscale8, 1),
    "RGB": (QImage.Format.Format_RGB888, 3),
    "RGBA": (QImage.Format.Format_RGBA8888, 4),
}


def pil_to_qimage(image: Image.Image) -> QImage:
    """Convert a PIL image to a QImage that owns its pixels (any mode; L, RGB, RGBA are direct)."""
    if image.mode not in _FORMATS:
        alpha = image.mode in ("LA", "La", "PA", "RGBa") or (
            image.mode == "P" and "transparency" in image.info
        )
        grey = image.mode in ("1", "I", "I;16", "F")
        image = image.convert("RGBA" if alpha else "L" if grey else "RGB")
    fmt, channels = _FORMATS[image.mode]
    data = image.tobytes()
    # The QImage borrows `data`, which Python frees later: copy so Qt owns the pixels.
    return QImage(data, image.width, image.height, image.width * channels, fmt).copy()


@dataclass(frozen=True)
class _Grid:
    """Cell layout of a batch, in image pixels (content coordinates)."""

    columns: int
    sizes: tuple[tuple[int, int], ...]

    @property
    def cell_w(self) -> int:
        return max(1, *(w for w, _ in self.sizes))

    @property
    def cell_h(self) -> int:
        return max(1, *(h for _, h in self.sizes))

    @property
    def rows(self) -> int:
        return math.ceil(len(self.sizes) / self.columns)

    @property
    def gap(self) -> int:
        # Proportional to the cell, so the gap looks the same at any zoom and image size.
        return 0 if len(self.sizes) == 1 else max(1, round(max(self.cell_w, self.cell_h) / 16))

    @property
    def width(self) -> int:
        return self.columns * self.cell_w + (self.columns - 1) * self.gap

    @property
    def height(self) -> int:
        return self.rows * self.cell_h + (self.rows - 1) * self.gap

    def cell_rect(self, index: int) -> QRectF:
        row, col = divmod(index, self.columns)
        x, y = col * (self.cell_w + self.gap), row * (self.cell_h + self.gap)
        return QRectF(x, y, self.cell_w, self.cell_h)

    def image_rect(self, index: int) -> QRectF:
        """The image centred in its cell (images of a batch may differ in size)."""
        w, h = self.sizes[index]
        cell = self.cell_rect(index)
        return QRectF(cell.x() + (self.cell_w - w) // 2, cell.y() + (self.cell_h - h) // 2, w, h)

    def index_at(self, x: float, y: float) -> int:
        """The cell under content point (x, y), or -1 for the gaps and outside."""
        pitch_x, pitch_y = self.cell_w + self.gap, self.cell_h + self.gap
        col, row = math.floor(x / pitch_x), math.floor(y / pitch_y)
        if not (0 <= col < self.columns and 0 <= row < self.rows):
            return -1
        if x - col * pitch_x >= self.cell_w or y - row * pitch_y >= self.cell_h:
            return -1
        index = row * self.columns + col
        return index if index < len(self.sizes) else -1


class ImageCanvas(QWidget):
    """Shows PIL images, alone or as a grid; zoom, pan, select a cell, copy and ask to save."""

    selection_changed = Signal(int)  # new selected index, -1 when cleared
    save_requested = Signal(int)  # index to save; the host writes the file with provenance
    smooth_changed = Signal(bool)
    cell_activated = Signal(int)  # a double-clicked cell
    quiz_changed = Signal()  # a mark was toggled or the answer shown

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._images: list[Image.Image] = []
        self._pixmaps: list[QPixmap] = []
        self._grid: _Grid | None = None
        self._columns: int | None = None  # as last asked by set_images
        self._selected = -1
        self._scale = 1.0
        self._offset = QPointF()  # widget position of the content's top-left corner
        self._auto_fit = True  # follow resizes until the user zooms or pans
        self._smooth = False
        self._placeholder = ""
        self._press_pos: QPointF | None = None
        self._last_pos = QPointF()
        self._drag_button = Qt.MouseButton.NoButton
        self._dragging = False
        self._quiz: Quiz | None = None
        # The host adds its own entries (e.g. a plugin's cell actions) to the context menu.
        self.extend_menu: Callable[[QMenu, int], None] | None = None
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(64, 64)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)  # paintEvent fills everything

    # -- content ----------------------------------------------------------------------------
    def set_images(self, images: list[Image.Image], columns: int | None = None) -> None:
        """Show a new result; refits and selects 0 only when the grid differs or after clear()."""
        self._columns = columns
        self._show(images)

    def show_preview(self, images: list[Image.Image]) -> None:
        """Show a live preview: keeps zoom, pan and selection while the grid stays the same."""
        self._show(images)

    def clear(self) -> None:
        """Remove the images; the next set_images/show_preview fits to view again."""
        self._images, self._pixmaps, self._grid, self._columns = [], [], None, None
        self._quiz = None
        self._auto_fit = True
        self._set_selected(-1)
        self.update()

    def set_placeholder(self, text: str) -> None:
        """Text shown centred while there is no image."""
        self._placeholder = text
        self.update()

    def image_count(self) -> int:
        return len(self._images)

    def selected_index(self) -> int:
        """The selected cell, or -1 when empty."""
        return self._selected

    def current_image(self) -> Image.Image | None:
        return self._images[self._selected] if self._selected >= 0 else None

    def set_selected_index(self, index: int) -> None:
        """Select a cell (ignored when out of range)."""
        if 0 <= index < len(self._images):
            self._set_selected(index)
            self._ensure_visible(index)

    # -- guessing game ----------------------------------------------------------------------
    def set_quiz(self, quiz: Quiz | None) -> None:
        """Clicks mark cells for ``quiz`` (None: plain selection again); Enter shows the answer."""
        self._quiz = quiz
        self.update()

    def quiz(self) -> Quiz | None:
        return self._quiz

    def reveal_quiz(self) -> None:
        if self._quiz is not None and not self._quiz.revealed:
            self._quiz.reveal()
            self.update()
            self.quiz_changed.emit()

    def toggle_mark(self, index: int) -> None:
        if self._quiz is not None and self._quiz.toggle(index):
            self.update()
            self.quiz_changed.emit()

    def cell_rect(self, index: int) -> QRectF:
        """Where cell `index` is drawn, in widget coordinates (empty when out of range)."""
        if self._grid is None or not 0 <= index < len(self._images):
            return QRectF()
        return self._to_widget(self._grid.cell_rect(index))

    def _show(self, images: list[Image.Image]) -> None:
        if not images:
            self.clear()
            return
        n = len(images)
        columns = max(1, min(self._columns or math.ceil(math.sqrt(n)), n))
        grid = _Grid(columns, tuple(image.size for image in images))
        # Always reconvert: a plugin may update its PIL images in place between previews,
        # and converting 64 small images costs about a millisecond.
        self._pixmaps = [QPixmap.fromImage(pil_to_qimage(image)) for image in images]
        self._images = list(images)
        if grid != self._grid:
            self._grid = grid
            self._auto_fit = True
            self._apply_fit()
            self._set_selected(0)
        self.update()

    def _set_selected(self, index: int) -> None:
        if index != self._selected:
            self._selected = index
            self.update()
            self.selection_changed.emit(index)

    # -- view -------------------------------------------------------------------------------
    def zoom(self) -> float:
        """Screen pixels per image pixel."""
        return self._scale

    def set_zoom(self, zoom: float) -> None:
        """Zoom about the widget centre."""
        self._zoom_to(zoom, QRectF(self.rect()).center())

    def zoom_in(self) -> None:
        self.set_zoom(self._scale * _ZOOM_STEP)

    def zoom_out(self) -> None:
        self.set_zoom(self._scale / _ZOOM_STEP)

    def fit(self) -> None:
        """Show the whole content, centred, and keep it fitted on resize."""
        self._auto_fit = True
        self._apply_fit()
        self.update()

    def actual_size(self) -> None:
        """One image pixel per screen pixel."""
        self.set_zoom(1.0)

    def smooth(self) -> bool:
        return self._smooth

    def set_smooth(self, on: bool) -> None:
        """Smooth (bilinear) scaling, or nearest-neighbour so small outputs stay crisp."""
        if on == self._smooth:
            return
        self._smooth = on
        if self._auto_fit:
            self._apply_fit()  # the fitted zoom depends on the mode (see _apply_fit)
        self.update()
        self.smooth_changed.emit(on)

    def _apply_fit(self) -> None:
        if self._grid is None:
            return
        w, h = self._grid.width, self._grid.height
        avail_w, avail_h = max(1, self.width() - 2 * _MARGIN), max(1, self.height() - 2 * _MARGIN)
        scale = min(avail_w / w, avail_h / h)
        if not self._smooth and scale > 1:
            # A whole-number magnification gives every model pixel the same size on screen.
            scale = math.floor(scale)
        self._scale = min(max(scale, _MIN_ZOOM), _MAX_ZOOM)
        self._offset = QPointF(
            round((self.width() - w * self._scale) / 2),
            round((self.height() - h * self._scale) / 2),
        )

    def _zoom_to(self, scale: float, anchor: QPointF) -> None:
        if self._grid is None:
            return
        scale = min(max(scale, _MIN_ZOOM), _MAX_ZOOM)
        # Keep the content point under `anchor` in place, so zooming follows the cursor.
        self._offset = anchor - (anchor - self._offset) * (scale / self._scale)
        self._scale = scale
        self._auto_fit = False
        self._clamp_offset()
        self.update()

    def _clamp_offset(self) -> None:
        if self._grid is None:
            return
        w, h = self._grid.width * self._scale, self._grid.height * self._scale
        keep_w, keep_h = min(_KEEP_VISIBLE, w), min(_KEEP_VISIBLE, h)
        x = min(max(self._offset.x(), keep_w - w), self.width() - keep_w)
        y = min(max(self._offset.y(), keep_h - h), self.height() - keep_h)
        self._offset = QPointF(x, y)

    def _ensure_visible(self, index: int) -> None:
        rect, view = self.cell_rect(index), QRectF(self.rect())
        if view.contains(rect):
            return
        dx = dy = 0.0
        if rect.left() < 0 or rect.width() > view.width():
            dx = _MARGIN - rect.left()
        elif rect.right() > view.right():
            dx = view.right() - _MARGIN - rect.right()
        if rect.top() < 0 or rect.height() > view.height():
            dy = _MARGIN - rect.top()
        elif rect.bottom() > view.bottom():
            dy = view.bottom() - _MARGIN - rect.bottom()
        self._offset += QPointF(dx, dy)
        self._clamp_offset()
        self.update()

    def _to_widget(self, rect: QRectF) -> QRectF:
        return QRectF(self._offset + rect.topLeft() * self._scale, rect.size() * self._scale)

    def _index_at(self, pos: QPointF) -> int:
        if self._grid is None:
            return -1
        content = (pos - self._offset) / self._scale
        return self._grid.index_at(content.x(), content.y())

    # -- clipboard and menu -----------------------------------------------------------------
    def copy_image(self) -> None:
        """Put the selected image on the clipboard."""
        image = self.current_image()
        if image is not None:
            QGuiApplication.clipboard().setImage(pil_to_qimage(image))

    def context_menu(self) -> QMenu:
        """Build the context menu (the host may add to it before showing)."""
        menu = QMenu(self)
        has_image = self._selected >= 0
        save = menu.addAction("Save image…")
        save.setEnabled(has_image)
        save.triggered.connect(lambda: self.save_requested.emit(self._selected))
        copy = menu.addAction("Copy image")
        copy.setShortcut(QKeySequence(QKeySequence.StandardKey.Copy))
        copy.setEnabled(has_image)
        copy.triggered.connect(self.copy_image)
        menu.addSeparator()
        fit = menu.addAction("Fit")
        fit.setShortcut(QKeySequence("F"))
        fit.triggered.connect(self.fit)
        actual = menu.addAction("Actual size")
        actual.setShortcut(QKeySequence("Ctrl+1"))
        actual.triggered.connect(self.actual_size)
        smooth = menu.addAction("Smooth upscaling")
        smooth.setCheckable(True)
        smooth.setChecked(self._smooth)
        smooth.toggled.connect(self.set_smooth)
        if self._quiz is not None and not self._quiz.open:
            menu.addSeparator()
            check = menu.addAction("Show the answer")
            check.setShortcut(QKeySequence("Return"))
            check.setEnabled(not self._quiz.revealed)
            check.triggered.connect(self.reveal_quiz)
        if self.extend_menu is not None and has_image:
            self.extend_menu(menu, self._selected)
        for action in menu.actions():
            action.setShortcutVisibleInContextMenu(True)
        return menu

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        menu = self.context_menu()
        menu.exec(event.globalPos())
        menu.deleteLater()

    # -- input ------------------------------------------------------------------------------
    def _key_action(self, event: QKeyEvent) -> Callable[[], None] | None:
        """What a key does here; shared by keyPressEvent and ShortcutOverride."""
        key, mods = event.key(), event.modifiers()
        ctrl = bool(mods & Qt.KeyboardModifier.ControlModifier)
        plain = not mods & (
            Qt.KeyboardModifier.ControlModifier
            | Qt.KeyboardModifier.AltModifier
            | Qt.KeyboardModifier.MetaModifier
        )
        if ctrl and key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            return self.zoom_in
        if ctrl and key == Qt.Key.Key_Minus:
            return self.zoom_out
        if (ctrl and key == Qt.Key.Key_0) or (plain and key == Qt.Key.Key_F):
            return self.fit
        if ctrl and key == Qt.Key.Key_1:
            return self.actual_size
        if event.matches(QKeySequence.StandardKey.Copy):
            return self.copy_image
        if self._quiz is not None and plain and key == Qt.Key.Key_Space and self._selected >= 0:
            index = self._selected
            return lambda: self.toggle_mark(index)
        if self._quiz is not None and plain and key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            return self.reveal_quiz
        steps = {Qt.Key.Key_Left: -1, Qt.Key.Key_Right: 1}
        if self._grid is not None:
            steps |= {Qt.Key.Key_Up: -self._grid.columns, Qt.Key.Key_Down: self._grid.columns}
        if plain and key in steps:
            target = self._selected + steps[Qt.Key(key)]
            return lambda: self.set_selected_index(target)
        return None

    def event(self, event: QEvent) -> bool:
        # Claim our keys before window-level shortcuts (e.g. a menu's Ctrl+0) take them.
        if (
            event.type() == QEvent.Type.ShortcutOverride
            and isinstance(event, QKeyEvent)
            and self._key_action(event) is not None
        ):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        action = self._key_action(event)
        if action is None:
            super().keyPressEvent(event)
            return
        action()
        event.accept()

    def wheelEvent(self, event: QWheelEvent) -> None:
        notches = event.angleDelta().y() / 120
        if not notches or self._grid is None:
            event.ignore()
            return
        self._zoom_to(self._scale * _ZOOM_STEP**notches, event.position())
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        button = event.button()
        if self._grid is None or button not in (
            Qt.MouseButton.LeftButton,
            Qt.MouseButton.MiddleButton,
        ):
            super().mousePressEvent(event)
            return
        self._press_pos = self._last_pos = event.position()
        self._drag_button = button
        self._dragging = False
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._press_pos is None:
            super().mouseMoveEvent(event)
            return
        pos = event.position()
        if not self._dragging and (pos - self._press_pos).manhattanLength() > _CLICK_SLOP:
            self._dragging = True
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        if self._dragging:
            self._offset += pos - self._last_pos
            self._auto_fit = False
            self._clamp_offset()
            self.update()
        self._last_pos = pos
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._press_pos is None or event.button() != self._drag_button:
            super().mouseReleaseEvent(event)
            return
        if not self._dragging and event.button() == Qt.MouseButton.LeftButton:
            index = self._index_at(event.position())
            if index >= 0:
                self._set_selected(index)
                self.toggle_mark(index)
        self._press_pos = None
        self._dragging = False
        self.unsetCursor()
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        index = self._index_at(event.position())
        if event.button() == Qt.MouseButton.LeftButton and index >= 0 and self._quiz is None:
            self.cell_activated.emit(index)
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def resizeEvent(self, event: QResizeEvent) -> None:
        if self._auto_fit:
            self._apply_fit()
        else:
            self._clamp_offset()
        super().resizeEvent(event)

    # -- painting ---------------------------------------------------------------------------
    def sizeHint(self) -> QSize:
        return QSize(512, 512)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        palette = self.palette()
        painter.fillRect(self.rect(), palette.color(QPalette.ColorRole.Window).darker(115))
        if self._grid is None:
            if self._placeholder:
                painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
                painter.drawText(
                    self.rect().adjusted(16, 16, -16, -16),
                    Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                    self._placeholder,
                )
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self._smooth)
        dirty = QRectF(event.rect())
        for i, pixmap in enumerate(self._pixmaps):
            target = self._to_widget(self._grid.image_rect(i))
            if target.intersects(dirty):
                painter.drawPixmap(target, pixmap, QRectF(pixmap.rect()))
        if len(self._pixmaps) > 1 and self._selected >= 0:
            pen = QPen(QColor(palette.color(QPalette.ColorRole.Highlight)), _FRAME)
            pen.setJoinStyle(Qt.PenJoinStyle.MiterJoin)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            out = _FRAME / 2 + 1  # just outside the cell, so the frame never hides pixels
            painter.drawRect(self.cell_rect(self._selected).adjusted(-out, -out, out, out))
        if self._quiz is not None:
            self._paint_quiz(painter, self._quiz)

    def _paint_quiz(self, painter: QPainter, quiz: Quiz) -> None:
        """Marked cells get a badge; once revealed every cell says what it was, in green where
        the user's call was right and red where it was wrong."""
        font = painter.font()
        font.setBold(True)
        painter.setFont(font)
        metrics = painter.fontMetrics()
        for i in range(min(len(quiz.answer), len(self._pixmaps))):
            rect = self.cell_rect(i)
            if quiz.revealed:
                colour = QColor(40, 170, 70) if quiz.correct(i) else QColor(215, 50, 50)
                text = quiz.marked_means if quiz.answer[i] else quiz.unmarked_means
            elif i in quiz.marks:
                colour, text = QColor(230, 140, 20), quiz.marked_means if quiz.open else "?"
            else:
                continue
            pen = QPen(colour, _FRAME)
            pen.setJoinStyle(Qt.PenJoinStyle.MiterJoin)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(rect.adjusted(1, 1, -1, -1))
            badge = QRectF(rect.topLeft(), QSize(metrics.horizontalAdvance(text) + 8,
                                                 metrics.height() + 2))  # fmt: skip
            painter.fillRect(badge, colour)
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, text)
