"""The history gallery: a thumbnail per saved result, newest first."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QFont,
    QIcon,
    QImage,
    QKeyEvent,
    QKeySequence,
    QPainter,
    QPixmap,
)
from PySide6.QtWidgets import QListView, QListWidget, QListWidgetItem, QMenu, QWidget

from gdl_studio.core.history import HistoryEntry
from gdl_studio.core.imageio import InputError, read_midi
from gdl_studio.core.midi_notes import Note, notes_from_midi
from gdl_studio.qt.canvases.piano_roll import channel_colour
from gdl_studio.qt.icons import kind_icon

THUMB = 96
THUMB_MIDI_BYTES = 2_000_000  # larger MIDI files get the plain icon: the gallery stays quick
PATH_ROLE = Qt.ItemDataRole.UserRole


class Gallery(QListWidget):
    """Thumbnails of history entries; activating one emits :attr:`entry_activated`."""

    entry_activated = Signal(object)  # HistoryEntry
    restore_requested = Signal(object)  # HistoryEntry: put its settings in the panel
    trash_requested = Signal(object)  # HistoryEntry: move its files to the trash

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setSpacing(4)
        self.setWordWrap(True)
        self._entries: dict[str, HistoryEntry] = {}
        # MIDI thumbnails parse their file (~10 ms each): they are drawn after start-up, a few
        # at a time from the event loop, over the plain icon the entry starts with.
        self._pending_rolls: list[str] = []
        self._roll_timer = QTimer(self)
        self._roll_timer.setInterval(0)
        self._roll_timer.timeout.connect(self._draw_pending_rolls)
        self.itemClicked.connect(self._activate)
        self.itemActivated.connect(self._activate)

    def set_entries(self, entries: list[HistoryEntry]) -> None:
        self.clear()
        self._entries = {}
        self._pending_rolls = []
        for entry in entries:
            self.add_entry(entry)

    def add_entry(self, entry: HistoryEntry) -> QListWidgetItem:
        """Insert at the top (newest first)."""
        prov = entry.provenance
        label = f"{prov.plugin}\nseed {prov.seed}" if prov.seed is not None else prov.plugin
        midi = entry.kind == "midi"
        item = QListWidgetItem(kind_icon("midi", THUMB) if midi else thumbnail(entry), label)
        if midi:
            self._pending_rolls.append(str(entry.path))
            self._roll_timer.start()
        item.setData(PATH_ROLE, str(entry.path))
        item.setToolTip(f"{entry.path.name}\n{prov.model or ''}  {prov.created}")
        self._entries[str(entry.path)] = entry
        self.insertItem(0, item)
        return item

    def _draw_pending_rolls(self, per_tick: int = 4) -> None:
        for _ in range(per_tick):
            if not self._pending_rolls:
                self._roll_timer.stop()
                return
            key = self._pending_rolls.pop()  # newest first: the top of the gallery
            entry = self._entries.get(key)
            item = self._item_of(key)
            if entry is not None and item is not None:
                item.setIcon(thumbnail(entry))

    def _item_of(self, key: str) -> QListWidgetItem | None:
        for i in range(self.count()):
            if self.item(i).data(PATH_ROLE) == key:
                return self.item(i)
        return None

    def entries(self) -> list[HistoryEntry]:
        return [self._entries[self.item(i).data(PATH_ROLE)] for i in range(self.count())]

    def remove_entry(self, entry: HistoryEntry) -> None:
        item = self._item_of(str(entry.path))
        if item is not None:
            self.takeItem(self.row(item))
            self._entries.pop(str(entry.path), None)

    def entry_at(self, row: int) -> HistoryEntry | None:
        item = self.item(row)
        return self._entries.get(item.data(PATH_ROLE)) if item is not None else None

    def menu_for(self, entry: HistoryEntry) -> QMenu:
        """The right-click menu of one entry."""
        menu = QMenu(self)
        menu.addAction("Show", lambda: self.entry_activated.emit(entry))
        menu.addAction("Use its settings", lambda: self.restore_requested.emit(entry))
        menu.addSeparator()
        trash = menu.addAction("Move to trash", lambda: self.trash_requested.emit(entry))
        trash.setShortcut(QKeySequence(QKeySequence.StandardKey.Delete))
        trash.setShortcutVisibleInContextMenu(True)
        return menu

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        item = self.itemAt(event.pos())
        entry = self._entries.get(item.data(PATH_ROLE)) if item is not None else None
        if entry is None:
            return
        self.menu_for(entry).exec(event.globalPos())

    def keyPressEvent(self, event: QKeyEvent) -> None:
        entry = self.entry_at(self.currentRow())
        if entry is not None and event.matches(QKeySequence.StandardKey.Delete):
            self.trash_requested.emit(entry)
            event.accept()
            return
        super().keyPressEvent(event)

    def _activate(self, item: QListWidgetItem) -> None:
        entry = self._entries.get(item.data(PATH_ROLE))
        if entry is not None:
            self.entry_activated.emit(entry)


def thumbnail(entry: HistoryEntry) -> QIcon:
    path = Path(entry.path)
    if entry.kind == "image":
        image = QImage(str(path))
        if not image.isNull():
            return QIcon(QPixmap.fromImage(image.scaled(
                THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.FastTransformation)))  # fmt: skip
    if entry.kind == "text":
        try:
            snippet = path.read_text(encoding="utf-8", errors="replace")[:120]
        except OSError:
            snippet = ""
        return _text_icon(snippet)
    if entry.kind == "midi":
        notes = _thumbnail_notes(path)
        if notes:
            return _roll_icon(notes)
    return kind_icon(entry.kind, THUMB)


def _thumbnail_notes(path: Path) -> list[Note]:
    """The notes of a MIDI file in the history, or [] when it cannot be read: a thumbnail
    never raises (the file is read with the bounds every MIDI input gets)."""
    try:
        if path.stat().st_size > THUMB_MIDI_BYTES:
            return []
        return notes_from_midi(read_midi(path))
    except (OSError, ValueError, InputError):
        return []


def _roll_icon(notes: list[Note]) -> QIcon:
    """A miniature piano roll: time across, pitch up, one colour per channel, as on the
    canvas (the first minute at most, so that a long piece's notes stay visible)."""
    pm = QPixmap(THUMB, THUMB)
    pm.fill(QColor("#24262b"))
    t_end = min(max(n.end for n in notes), 60.0)
    low = min(n.pitch for n in notes) - 1
    high = max(n.pitch for n in notes) + 1
    row = (THUMB - 8) / (high - low + 1)
    p = QPainter(pm)
    p.setPen(Qt.PenStyle.NoPen)
    for n in notes:
        if n.start >= t_end:
            continue
        x0 = 4 + (THUMB - 8) * n.start / t_end
        x1 = 4 + (THUMB - 8) * min(n.end, t_end) / t_end
        y = 4 + (high - n.pitch) * row
        p.setBrush(channel_colour(n.channel, n.velocity))
        p.drawRect(QRectF(x0, y, max(1.0, x1 - x0), max(1.0, row)))
    p.end()
    return QIcon(pm)


def _text_icon(text: str) -> QIcon:
    pm = QPixmap(THUMB, THUMB)
    pm.fill(QColor("#fffdf5"))
    p = QPainter(pm)
    font = QFont()
    font.setPixelSize(10)
    p.setFont(font)
    p.setPen(QColor("#333"))
    p.drawText(pm.rect().adjusted(4, 4, -4, -4), Qt.TextFlag.TextWordWrap, text)
    p.end()
    return QIcon(pm)
