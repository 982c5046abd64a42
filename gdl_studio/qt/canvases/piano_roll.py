"""A piano roll: shows MIDI notes over a bar/beat grid, and plays them with a SoundFont."""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import mido
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QKeyEvent,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from gdl_studio.core.midi_notes import (
    Note,
    grid_lines,
    midi_duration,
    notes_from_midi,
    notes_to_midi,
)
from gdl_studio.qt.audio import MidiPlayer

KEYS_W = 52  # keyboard width, px
RULER_H = 22  # time ruler height, px
BLACK = {1, 3, 6, 8, 10}  # pitch classes of the black keys
MIN_PPS, MAX_PPS = 1.0, 4000.0  # time zoom limits, pixels per second
BACKGROUND = QColor(36, 38, 42)
BLACK_LANE = QColor(30, 32, 35)


def _as_note(item: Any) -> Note:
    """Previews may stream plain tuples (pitch, start, end[, velocity, channel, program])."""
    if isinstance(item, Note):
        return item
    pitch, start, end, *rest = item
    velocity, channel, program = [*rest, 100, 0, 0][:3] if rest else (100, 0, 0)
    return Note(int(pitch), float(start), float(end), int(velocity), int(channel), int(program))


def channel_colour(channel: int, velocity: int) -> QColor:
    """A distinct hue per channel; louder notes are more opaque."""
    colour = QColor.fromHsv((channel * 47 + 200) % 360, 160, 235)
    colour.setAlpha(70 + round(185 * max(0, min(velocity, 127)) / 127))
    return colour


class _RollView(QWidget):
    """The drawing surface: ruler on top, keyboard on the left, notes in the middle."""

    seek_requested = Signal(float)
    loop_changed = Signal()
    resized = Signal()
    notes_edited = Signal(list)  # draw mode: the notes after an edit

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(200, 120)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.setMouseTracking(False)
        self.notes: list[Note] = []
        self._starts: list[float] = []
        self._longest = 0.0
        self.duration = 0.0
        self.beats: list[tuple[float, bool]] = []  # (seconds, starts a bar)
        self.t0 = 0.0  # seconds at the left edge of the roll
        self.pps = 100.0  # pixels per second
        self.top = 84.0  # pitch shown in the top row
        self.row_h = 8.0  # pixels per semitone
        self.playhead = 0.0
        self.loop: tuple[float, float] | None = None
        self.placeholder = ""
        self.user_moved = False  # the user zoomed or scrolled: streaming updates stop refitting
        self._drag_from: float | None = None
        self._dragging = False
        self._ruler_press = False
        # Draw mode: drag in the notes to add one (on the grid's 16ths), click one to remove it.
        self.drawing = False
        self._new_note: Note | None = None
        self._press_note: int | None = None  # the note a draw-mode press landed on

    # -- geometry -----------------------------------------------------------------------------
    def roll_width(self) -> float:
        return max(1.0, self.width() - KEYS_W)

    def time_to_x(self, t: float) -> float:
        return KEYS_W + (t - self.t0) * self.pps

    def x_to_time(self, x: float) -> float:
        return self.t0 + (x - KEYS_W) / self.pps

    def pitch_to_y(self, pitch: float) -> float:
        """Top edge of ``pitch``'s row."""
        return RULER_H + (self.top - pitch) * self.row_h

    def note_rect(self, note: Note) -> QRectF:
        x0, x1 = self.time_to_x(note.start), self.time_to_x(note.end)
        return QRectF(x0, self.pitch_to_y(note.pitch), max(2.0, x1 - x0), self.row_h)

    def visible_span(self) -> tuple[float, float]:
        return self.t0, self.t0 + self.roll_width() / self.pps

    def y_to_pitch(self, y: float) -> int:
        """The pitch whose row holds ``y`` (the inverse of :meth:`pitch_to_y`)."""
        return min(127, max(0, math.ceil(self.top - (y - RULER_H) / self.row_h)))

    def beat_at(self, t: float) -> tuple[float, float]:
        """(start, length) in seconds of the beat holding ``t``, from the grid's beat lines
        (the piece's tempo); before the first line or past the last the nearest beat's length
        repeats."""
        times = [b for b, _ in self.beats]
        if len(times) < 2:
            times = [0.0, 0.5]  # no grid: 120 bpm
        i = min(max(bisect.bisect_right(times, t) - 1, 0), len(times) - 2)
        return times[i], times[i + 1] - times[i]

    def sixteenth(self, t: float) -> float:
        return self.beat_at(t)[1] / 4

    def snap(self, t: float, up: bool = False) -> float:
        """``t`` moved onto the grid's sixteenth notes (down, or ``up``)."""
        start, beat = self.beat_at(t)
        k = (t - start) / (beat / 4)
        k = math.ceil(k - 1e-6) if up else math.floor(k + 1e-6)
        return max(0.0, start + k * beat / 4)

    def note_at(self, pos: QPointF) -> int | None:
        """The index of the note drawn under ``pos`` (the last one drawn on top), if any."""
        for i in range(len(self.notes) - 1, -1, -1):
            if self.note_rect(self.notes[i]).contains(pos):
                return i
        return None

    def _clamp(self) -> None:
        rows = (self.height() - RULER_H) / self.row_h
        self.top = min(127.0, max(self.top, min(127.0, rows - 1)))
        self.pps = min(MAX_PPS, max(MIN_PPS, self.pps))
        self.t0 = max(0.0, min(self.t0, max(0.0, self.duration - 0.5)))

    def set_content(self, notes: list[Note], duration: float, midi: mido.MidiFile | None) -> None:
        self.notes = notes
        self._starts = [n.start for n in notes]
        self._longest = max((n.end - n.start for n in notes), default=0.0)
        self.duration = max(duration, max((n.end for n in notes), default=0.0))
        self.beats = grid_lines(midi, self.duration + 60.0)
        self.update()

    def fit(self) -> None:
        """Show the whole piece and all its pitches."""
        self.t0 = 0.0
        self.pps = self.roll_width() / max(1.0, self.duration * 1.02)
        height = max(1.0, self.height() - RULER_H)
        if self.notes:
            low = min(n.pitch for n in self.notes) - 2
            high = max(n.pitch for n in self.notes) + 2
        else:
            low, high = 48, 84
        self.row_h = min(24.0, max(3.0, height / (high - low + 1)))
        rows = height / self.row_h
        self.top = high + max(0.0, (rows - (high - low + 1)) / 2)
        self._clamp()
        self.update()

    def zoom(self, factor: float, at_x: float) -> None:
        """Scale time by ``factor`` keeping the time under ``at_x`` in place."""
        anchor = self.x_to_time(at_x)
        self.pps = min(MAX_PPS, max(MIN_PPS, self.pps * factor))
        self.t0 = max(0.0, anchor - (at_x - KEYS_W) / self.pps)
        self.update()

    # -- events -------------------------------------------------------------------------------
    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.resized.emit()

    def wheelEvent(self, event: QWheelEvent) -> None:
        delta = event.angleDelta().y() or event.angleDelta().x()  # Shift turns y into x on macOS
        if not delta:
            return
        self.user_moved = True
        mods = event.modifiers()
        if mods & Qt.KeyboardModifier.ControlModifier:
            self.zoom(1.2 ** (delta / 120), event.position().x())
        elif mods & Qt.KeyboardModifier.ShiftModifier:
            span = self.roll_width() / self.pps
            self.t0 = max(0.0, self.t0 - delta / 120 * span * 0.1)
        else:
            self.top += delta / 120 * 3
            self._clamp()
        self.update()
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        if self.drawing and pos.x() >= KEYS_W and pos.y() >= RULER_H:
            self._draw_press(event)
            return
        if event.button() != Qt.MouseButton.LeftButton or event.position().x() < KEYS_W:
            return super().mousePressEvent(event)
        self._drag_from = max(0.0, self.x_to_time(event.position().x()))
        # Only the ruler starts a loop selection; a click in the notes just moves the playhead.
        self._dragging = False
        self._ruler_press = event.position().y() < RULER_H
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._new_note is not None:
            note = self._new_note
            end = self.snap(max(self.x_to_time(event.position().x()), note.start), up=True)
            end = max(end, note.start + self.sixteenth(note.start))
            self._new_note = dataclasses.replace(note, end=end)
            self.update()
            return
        if self._drag_from is None or not self._ruler_press:
            return
        here = max(0.0, self.x_to_time(event.position().x()))
        if self._dragging or abs(here - self._drag_from) * self.pps > 3:
            self._dragging = True
            self.loop = (min(here, self._drag_from), max(here, self._drag_from))
            self.loop_changed.emit()
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._new_note is not None or self._press_note is not None:
            self._draw_release(event)
            return
        if self._drag_from is None:
            return
        if not self._dragging:
            t = self._drag_from
            if self._ruler_press and self.loop and not self.loop[0] <= t <= self.loop[1]:
                self.loop = None  # a click on the ruler outside the loop clears it
                self.loop_changed.emit()
            self.seek_requested.emit(t)
        self._drag_from = None
        self._dragging = False

    def _draw_press(self, event: QMouseEvent) -> None:
        pos = event.position()
        hit = self.note_at(pos)
        if event.button() == Qt.MouseButton.RightButton:
            if hit is not None:
                self._edit([n for i, n in enumerate(self.notes) if i != hit])
        elif event.button() == Qt.MouseButton.LeftButton:
            if hit is not None:
                self._press_note = hit  # removed on release, unless the press becomes a drag
            else:
                start = self.snap(max(0.0, self.x_to_time(pos.x())))
                self._new_note = Note(
                    self.y_to_pitch(pos.y()), start, start + self.sixteenth(start), 100, 0, 0
                )
                self.update()
        event.accept()

    def _draw_release(self, event: QMouseEvent) -> None:
        note, self._new_note = self._new_note, None
        hit, self._press_note = self._press_note, None
        if note is not None:
            self._edit(sorted([*self.notes, note], key=lambda n: (n.start, n.pitch)))
        elif hit is not None and self.note_at(event.position()) == hit:
            self._edit([n for i, n in enumerate(self.notes) if i != hit])
        event.accept()

    def _edit(self, notes: list[Note]) -> None:
        self.notes_edited.emit(notes)

    # -- painting -----------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), BACKGROUND)
        t_start, t_end = self.visible_span()
        self._paint_lanes(p)
        self._paint_grid(p, t_start, t_end)
        self._paint_notes(p, t_start, t_end)
        if self._new_note is not None:
            p.setBrush(QColor(255, 230, 120, 200))
            p.drawRect(self.note_rect(self._new_note))
        self._paint_ruler(p)
        if self.loop:
            a, b = self.time_to_x(self.loop[0]), self.time_to_x(self.loop[1])
            p.fillRect(QRectF(a, 0, b - a, self.height()), QColor(255, 210, 90, 40))
            p.fillRect(QRectF(a, 0, b - a, RULER_H), QColor(255, 210, 90, 120))
        x = self.time_to_x(self.playhead)
        if x >= KEYS_W:
            p.setPen(QPen(QColor(255, 80, 80), 2))
            p.drawLine(QPointF(x, 0), QPointF(x, self.height()))
        self._paint_keyboard(p)
        if not self.notes and self.placeholder:
            p.setPen(QColor(170, 170, 170))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       self.placeholder)  # fmt: skip
        p.end()

    def _visible_pitches(self) -> range:
        bottom = math.floor(self.top - (self.height() - RULER_H) / self.row_h)
        return range(max(0, bottom), min(127, math.ceil(self.top)) + 1)

    def _paint_lanes(self, p: QPainter) -> None:
        for pitch in self._visible_pitches():
            if pitch % 12 in BLACK:
                y = self.pitch_to_y(pitch)
                p.fillRect(QRectF(KEYS_W, y, self.roll_width(), self.row_h), BLACK_LANE)

    def _paint_grid(self, p: QPainter, t_start: float, t_end: float) -> None:
        times = [t for t, _ in self.beats]
        lo, hi = bisect.bisect_left(times, t_start), bisect.bisect_right(times, t_end)
        beat_px = self.pps * (times[1] - times[0]) if len(times) > 1 else 0
        bar_no = sum(1 for _, b in self.beats[:lo] if b)
        for t, is_bar in self.beats[lo:hi]:
            bar_no += is_bar
            if not is_bar and beat_px < 6:
                continue  # too dense to read: bars only
            if is_bar and beat_px * 4 < 6 and bar_no % 8 != 1:
                continue
            p.setPen(QColor(90, 94, 100) if is_bar else QColor(52, 55, 60))
            x = self.time_to_x(t)
            p.drawLine(QPointF(x, RULER_H), QPointF(x, self.height()))

    def _paint_notes(self, p: QPainter, t_start: float, t_end: float) -> None:
        lo = bisect.bisect_left(self._starts, t_start - self._longest)
        hi = bisect.bisect_right(self._starts, t_end)
        pitches = self._visible_pitches()
        p.setPen(Qt.PenStyle.NoPen)
        for note in self.notes[lo:hi]:
            if note.end >= t_start and note.pitch in pitches:
                p.setBrush(channel_colour(note.channel, note.velocity))
                p.drawRect(self.note_rect(note).adjusted(0, 0.5, 0, -0.5))

    def _paint_ruler(self, p: QPainter) -> None:
        p.fillRect(QRectF(0, 0, self.width(), RULER_H), QColor(48, 50, 55))
        p.setPen(QColor(200, 200, 200))
        last_x = -1e9
        bar_no = 0
        t_start, t_end = self.visible_span()
        for t, is_bar in self.beats:
            if not is_bar:
                continue
            bar_no += 1
            if t < t_start or t > t_end:
                continue
            x = self.time_to_x(t)
            if x - last_x >= 36:  # leave room for the label
                p.drawText(QPointF(x + 3, RULER_H - 6), str(bar_no))
                p.drawLine(QPointF(x, RULER_H - 8), QPointF(x, RULER_H))
                last_x = x

    def _paint_keyboard(self, p: QPainter) -> None:
        p.fillRect(QRectF(0, RULER_H, KEYS_W, self.height() - RULER_H), QColor(235, 235, 235))
        for pitch in self._visible_pitches():
            y = self.pitch_to_y(pitch)
            if pitch % 12 in BLACK:
                p.fillRect(QRectF(0, y, KEYS_W * 0.6, self.row_h), QColor(25, 25, 25))
            else:
                p.setPen(QColor(180, 180, 180))
                p.drawLine(QPointF(0, y + self.row_h), QPointF(KEYS_W, y + self.row_h))
            if pitch % 12 == 0 and self.row_h >= 5:
                p.setPen(QColor(40, 40, 40))
                p.drawText(QRectF(0, y, KEYS_W - 3, self.row_h),
                           Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                           f"C{pitch // 12 - 1}")  # fmt: skip
        p.fillRect(QRectF(0, 0, KEYS_W, RULER_H), QColor(48, 50, 55))


class PianoRollCanvas(QWidget):
    """Piano roll with playback: Space plays/stops, drag on the ruler to loop a range,
    Ctrl+wheel zooms time, Shift+wheel scrolls time, the wheel scrolls pitch.

    Draw mode (D, or the Draw button) edits the notes: drag to add one on the grid's
    sixteenths, click (or right-click) one to remove it, Ctrl+Z undoes; *Use as input* hands
    the notes to the current plugin as a MIDI file (e.g. a melody to harmonise)."""

    export_requested = Signal()
    export_audio_requested = Signal()
    use_as_input_requested = Signal()

    def __init__(self, player: Any | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # Any object with MidiPlayer's methods and signals will do (tests use a fake).
        self.player: MidiPlayer = player if player is not None else MidiPlayer(self)
        self.player.position_changed.connect(self._on_position)
        self.player.state_changed.connect(self._on_state)
        self.player.error.connect(self._on_error)
        self._midi: mido.MidiFile | None = None
        self._play_midi: mido.MidiFile | None = None  # what play() hands the player
        self._needs_fit = True
        self._grid_midi: mido.MidiFile | None = None  # whose beat lines the grid follows
        self._undo: list[list[Note]] = []
        self.edited = False  # the notes shown were changed in draw mode
        self._saved_notes: list[Note] = []
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

        self.view = _RollView(self)
        self.view.seek_requested.connect(self._seek)
        self.view.loop_changed.connect(self._update_time_label)
        self.view.resized.connect(self._on_view_resized)
        self.view.notes_edited.connect(self._apply_edit)
        self.play_button = self._button("▶ Play", "Play or stop (Space)", self.toggle_play)
        self.fit_button = self._button("Fit", "Show the whole piece", self.fit)
        self.export_button = self._button(
            "Export .mid…", "Save this MIDI file", self.export_requested.emit
        )
        self.audio_button = self._button(
            "Export audio…",
            "Render the piece through the SoundFont, as it plays, to a .wav file",
            self.export_audio_requested.emit,
        )
        self.draw_button = self._button(
            "✎ Draw",
            "Draw notes (D): drag to add one, click one to remove it, Ctrl+Z undoes",
            lambda: self.set_drawing(self.draw_button.isChecked()),
        )
        self.draw_button.setCheckable(True)
        self.new_button = self._button("New", "Start an empty roll to draw on", self.new_drawing)
        self.use_button = self._button(
            "Use as input",
            "Give these notes to the current plugin as its MIDI file (e.g. a melody to harmonise)",
            self.use_as_input_requested.emit,
        )
        self.time_label = QLabel()
        self.error_label = QLabel()
        self.error_label.setObjectName("piano_roll_error")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #d9534f;")
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.hide()

        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        for widget in (
            self.play_button,
            self.fit_button,
            self.export_button,
            self.audio_button,
            self.draw_button,
            self.new_button,
            self.use_button,
        ):
            bar.addWidget(widget)
        bar.addStretch(1)
        bar.addWidget(self.time_label)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addLayout(bar)
        lay.addWidget(self.error_label)
        lay.addWidget(self.view, 1)
        self._refresh_buttons()

    def _button(self, text: str, tip: str, slot: Any) -> QToolButton:
        button = QToolButton(self)
        button.setText(text)
        button.setToolTip(tip)
        # No focus: Space must reach the canvas, not click whichever button was last used.
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        button.clicked.connect(lambda _checked=False: slot())
        return button

    # -- drawing ------------------------------------------------------------------------------
    def set_drawing(self, on: bool) -> None:
        self.view.drawing = on
        self.draw_button.setChecked(on)
        self.view.setCursor(Qt.CursorShape.CrossCursor if on else Qt.CursorShape.ArrowCursor)
        self._refresh_buttons()

    def drawing(self) -> bool:
        return self.view.drawing

    def new_drawing(self) -> None:
        """An empty roll in draw mode (undoable)."""
        self.set_drawing(True)
        if self.view.notes:
            self._apply_edit([])

    def _apply_edit(self, notes: list[Note]) -> None:
        self._undo.append(list(self.view.notes))
        self._set_drawn(notes)

    def undo(self) -> bool:
        if not self._undo:
            return False
        self._set_drawn(self._undo.pop())
        return True

    def _set_drawn(self, notes: list[Note]) -> None:
        self.stop()
        self._midi = self._play_midi = None
        self.edited = True
        self._show(notes, 0.0, self._grid_midi)

    @property
    def unsaved(self) -> bool:
        """Notes were drawn and not written to a file since (see :meth:`mark_saved`)."""
        return self.edited and bool(self.view.notes) and self.view.notes != self._saved_notes

    def mark_saved(self) -> None:
        """The notes shown were written to a file."""
        self._saved_notes = list(self.view.notes)

    def drawn_midi(self) -> mido.MidiFile:
        """The notes shown as a MIDI file at the grid's tempo, so that they keep their beats
        (a melody drawn on an 80 bpm piece is written at 80 bpm)."""
        _, beat = self.view.beat_at(0.0)
        return notes_to_midi(self.view.notes, tempo=max(1, round(beat * 1e6)))

    # -- content ------------------------------------------------------------------------------
    def set_midi(self, midi: mido.MidiFile) -> None:
        """Show (and make playable) a whole MIDI file."""
        self.stop()
        try:
            notes = notes_from_midi(midi)
            length = midi_duration(midi)
        except ValueError as exc:
            self.clear()
            self._on_error(f"This MIDI file cannot be shown: {exc}")
            return
        self._midi = self._play_midi = midi
        self._grid_midi = midi
        self._undo.clear()
        self.edited = False
        self.view.loop = None
        self._show(notes, length, midi)
        self.set_playhead(0.0)
        self.view.user_moved = False
        self.fit()

    def set_notes(self, notes: Iterable[Any]) -> None:
        """Show notes without a file (e.g. a streaming preview); refits until the user zooms."""
        self.stop()
        if self._midi is not None or not self.view.notes:
            self.view.user_moved = False  # new content, not the next chunk of a stream
        self._midi = None
        self._play_midi = None
        self._grid_midi = None
        self._undo.clear()
        self.edited = False
        self._show(sorted((_as_note(n) for n in notes), key=lambda n: n.start), 0.0, None)
        if not self.view.user_moved:
            self.fit()

    def _show(self, notes: list[Note], length: float, midi: mido.MidiFile | None) -> None:
        self.view.set_content(notes, length, midi)
        self._refresh_buttons()
        self._update_time_label()

    def clear(self) -> None:
        self.stop()
        self._midi = self._play_midi = self._grid_midi = None
        self._undo.clear()
        self.edited = False
        self.view.loop = None
        self._show([], 0.0, None)
        self.set_playhead(0.0)

    def set_placeholder(self, text: str) -> None:
        self.view.placeholder = text
        self.view.update()

    def set_soundfont(self, path: Path | None) -> None:
        self.player.set_soundfont(path)
        self.error_label.clear()
        self.error_label.hide()

    def notes(self) -> list[Note]:
        return list(self.view.notes)

    def midi(self) -> mido.MidiFile | None:
        """The file shown by set_midi, or None while showing bare notes."""
        return self._midi

    # -- view ---------------------------------------------------------------------------------
    def fit(self) -> None:
        if self.view.width() <= KEYS_W or self.view.height() <= RULER_H:
            self._needs_fit = True  # not laid out yet: fit on the first resize
            return
        self._needs_fit = False
        self.view.fit()

    def zoom(self, factor: float, at_x: float | None = None) -> None:
        """Scale time around ``at_x`` (view pixels; default the middle)."""
        self.view.user_moved = True
        x = at_x if at_x is not None else KEYS_W + self.view.roll_width() / 2
        self.view.zoom(factor, x)

    def visible_span(self) -> tuple[float, float]:
        return self.view.visible_span()

    def note_rect(self, note: Note) -> QRectF:
        """Where ``note`` is drawn, in this widget's coordinates."""
        return self.view.note_rect(note).translated(QPointF(self.view.pos()))

    def loop_range(self) -> tuple[float, float] | None:
        return self.view.loop

    def set_loop_range(self, loop: tuple[float, float] | None) -> None:
        self.view.loop = (min(loop), max(loop)) if loop else None
        self.view.update()
        self._update_time_label()

    def playhead(self) -> float:
        return self.view.playhead

    def set_playhead(self, seconds: float) -> None:
        self.view.playhead = max(0.0, seconds)
        t0, t1 = self.view.visible_span()
        if self.player.is_playing() and not t0 <= seconds <= t1:
            self.view.t0 = max(0.0, seconds - (t1 - t0) * 0.05)  # follow the playhead
        self.view.update()
        self._update_time_label()

    # -- playback -----------------------------------------------------------------------------
    def audible_midi(self) -> mido.MidiFile | None:
        """What Play plays (and Export audio renders): the result's MIDI file, or the notes
        as drawn; None when the roll is empty."""
        if not self.view.notes:
            return None
        if self._play_midi is None:
            self._play_midi = notes_to_midi(self.view.notes)
        return self._play_midi

    def play(self) -> None:
        midi = self.audible_midi()
        if midi is None:
            return
        start = self.playhead()
        if start >= self.view.duration - 0.01:
            start = 0.0
        self.error_label.hide()
        self.player.play(midi, start, self.view.loop)

    def stop(self) -> None:
        if self.player.is_playing():
            self.player.stop()

    def toggle_play(self) -> None:
        if self.player.is_playing():
            self.stop()
        else:
            self.play()

    def _seek(self, seconds: float) -> None:
        self.set_playhead(seconds)
        if self.player.is_playing():
            self.play()  # restart from the new place (the render is cached)

    def _on_position(self, seconds: float) -> None:
        self.set_playhead(seconds)

    def _on_state(self, playing: bool) -> None:
        self._refresh_buttons()

    def _on_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.setVisible(bool(message))
        self._refresh_buttons()

    def _refresh_buttons(self) -> None:
        playing = self.player.is_playing()
        self.play_button.setText("■ Stop" if playing else "▶ Play")
        self.play_button.setEnabled(playing or bool(self.view.notes))
        self.export_button.setEnabled(bool(self.view.notes))
        self.audio_button.setEnabled(bool(self.view.notes))
        self.new_button.setVisible(self.view.drawing)
        self.use_button.setVisible(self.view.drawing)
        self.use_button.setEnabled(bool(self.view.notes))

    def _update_time_label(self) -> None:
        def fmt(t: float) -> str:
            return f"{int(t // 60)}:{t % 60:04.1f}"

        text = f"{fmt(self.view.playhead)} / {fmt(self.view.duration)}"
        if self.view.loop:
            text += f"   loop {fmt(self.view.loop[0])}–{fmt(self.view.loop[1])}"
        self.time_label.setText(text)

    # -- events -------------------------------------------------------------------------------
    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self.toggle_play()
            event.accept()
            return
        if event.key() == Qt.Key.Key_D and not event.modifiers():
            self.set_drawing(not self.drawing())
            event.accept()
            return
        if event.matches(QKeySequence.StandardKey.Undo) and self.undo():
            event.accept()
            return
        super().keyPressEvent(event)

    def _on_view_resized(self) -> None:
        if self._needs_fit:
            self.fit()

    def hideEvent(self, event: Any) -> None:
        self.stop()  # switching to another canvas should not leave music playing
        super().hideEvent(event)
