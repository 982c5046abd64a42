"""The piano roll: drawing, zoom, playhead, playback controls and export."""

from __future__ import annotations

import mido
import pytest
from PySide6.QtCore import QObject, QPoint, QPointF, Qt, Signal
from PySide6.QtGui import QColor

from gdl_studio.core.midi_notes import Note
from gdl_studio.core.soundfont import HOW_TO_ADD_SOUNDFONT
from gdl_studio.qt.audio import MidiPlayer
from gdl_studio.qt.canvases.piano_roll import RULER_H, PianoRollCanvas


class FakePlayer(QObject):
    """Stands in for MidiPlayer: records calls, plays nothing."""

    position_changed = Signal(float)
    state_changed = Signal(bool)
    error = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.playing = False
        self.plays: list[tuple[mido.MidiFile, float, tuple[float, float] | None]] = []
        self.soundfont = None

    def set_soundfont(self, path) -> None:
        self.soundfont = path

    def play(self, midi, start=0.0, loop=None) -> None:
        self.plays.append((midi, start, loop))
        self.playing = True
        self.state_changed.emit(True)

    def stop(self) -> None:
        self.playing = False
        self.state_changed.emit(False)

    def is_playing(self) -> bool:
        return self.playing


def _midi() -> mido.MidiFile:
    """C4 from 1 to 2 s and G4 from 3 to 4 s, at 120 bpm."""
    midi = mido.MidiFile(type=0, ticks_per_beat=480)
    midi.tracks.append(mido.MidiTrack([
        mido.Message("note_on", note=60, velocity=127, time=960),
        mido.Message("note_off", note=60, time=960),
        mido.Message("note_on", note=67, velocity=127, time=960),
        mido.Message("note_off", note=67, time=960),
    ]))  # fmt: skip
    return midi


@pytest.fixture
def roll(qtbot) -> tuple[PianoRollCanvas, FakePlayer]:
    player = FakePlayer()
    canvas = PianoRollCanvas(player)
    qtbot.addWidget(canvas)
    canvas.resize(800, 400)
    canvas.show()
    qtbot.waitExposed(canvas)
    canvas.set_midi(_midi())
    return canvas, player


def test_notes_are_drawn_where_they_are(roll) -> None:
    canvas, _ = roll
    assert [(n.pitch, n.start, n.end) for n in canvas.notes()] == [(60, 1.0, 2.0), (67, 3.0, 4.0)]
    note = canvas.notes()[0]
    rect = canvas.note_rect(note)
    image = canvas.grab().toImage()
    inside = QColor(image.pixel(rect.center().toPoint()))
    # Same row, half a second after the note ends: background.
    after = rect.center() + QPointF(rect.width(), 0)
    outside = QColor(image.pixel(after.toPoint()))
    assert inside != outside
    assert inside.saturation() > 60 and outside.saturation() < 40


def test_ctrl_wheel_zooms_and_zoom_changes_the_visible_span(roll, qtbot) -> None:
    canvas, _ = roll
    before = canvas.visible_span()
    assert before[0] == 0.0 and before[1] >= 4.0  # fit() shows the whole piece
    canvas.zoom(2.0)
    t0, t1 = canvas.visible_span()
    assert t1 - t0 == pytest.approx((before[1] - before[0]) / 2)
    view = canvas.view
    pos = QPointF(view.width() / 2, view.height() / 2)
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    event = QWheelEvent(pos, view.mapToGlobal(pos), QPoint(), QPoint(0, 120),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.ControlModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)  # fmt: skip
    anchor = view.x_to_time(pos.x())
    QApplication.sendEvent(view, event)
    t2, t3 = canvas.visible_span()
    assert t3 - t2 < t1 - t0  # zoomed in
    assert view.x_to_time(pos.x()) == pytest.approx(anchor)  # around the cursor


def test_set_playhead_moves_the_drawn_playhead(roll) -> None:
    canvas, _ = roll
    canvas.set_playhead(2.5)
    assert canvas.playhead() == 2.5
    x = round(canvas.view.time_to_x(2.5) + canvas.view.x())
    y = canvas.view.y() + RULER_H + 20
    image = canvas.grab().toImage()
    assert QColor(image.pixel(x, y)).red() > 200  # the red playhead line is there
    canvas.set_playhead(0.5)
    image = canvas.grab().toImage()
    assert QColor(image.pixel(x, y)).red() < 100  # and gone from the old place


def test_player_position_moves_the_playhead(roll) -> None:
    canvas, player = roll
    player.position_changed.emit(3.25)
    assert canvas.playhead() == 3.25


def test_space_toggles_play_from_the_playhead(roll, qtbot) -> None:
    canvas, player = roll
    canvas.set_playhead(1.5)
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_Space)
    assert player.is_playing()
    assert player.plays[-1][1] == 1.5
    assert canvas.play_button.text().endswith("Stop")
    qtbot.keyClick(canvas, Qt.Key.Key_Space)
    assert not player.is_playing()
    assert canvas.play_button.text().endswith("Play")


def test_dragging_on_the_ruler_sets_a_loop_that_play_uses(roll, qtbot) -> None:
    canvas, player = roll
    view = canvas.view
    x0, x1 = round(view.time_to_x(1.0)), round(view.time_to_x(3.0))
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(x0, 5))
    qtbot.mouseMove(view, QPoint(x1, 5))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(x1, 5))
    a, b = canvas.loop_range()
    assert a == pytest.approx(1.0, abs=0.05) and b == pytest.approx(3.0, abs=0.05)
    canvas.play_button.click()
    assert player.plays[-1][2] == canvas.loop_range()


def test_export_button_emits_export_requested(roll, qtbot) -> None:
    canvas, _ = roll
    with qtbot.waitSignal(canvas.export_requested, timeout=1000):
        canvas.export_button.click()


def test_streamed_notes_are_shown_and_playable(roll) -> None:
    canvas, player = roll
    canvas.set_notes([Note(50, 0.0, 0.5, 90, 0, 0), (52, 0.5, 1.0)])
    assert [n.pitch for n in canvas.notes()] == [50, 52]
    canvas.toggle_play()
    played = player.plays[-1][0]
    assert sum(m.type == "note_on" for m in played) == 2
    canvas.clear()
    assert canvas.notes() == [] and not player.is_playing()


def test_player_errors_are_shown(roll) -> None:
    canvas, player = roll
    player.error.emit("no SoundFont here")
    assert canvas.error_label.text() == "no SoundFont here"
    assert not canvas.error_label.isHidden()


def test_real_player_without_a_soundfont_says_how_to_add_one(qtbot) -> None:
    player = MidiPlayer()
    player.set_soundfont(None)
    states: list[bool] = []
    player.state_changed.connect(states.append)
    with qtbot.waitSignal(player.error, timeout=1000) as blocker:
        player.play(_midi())
    assert blocker.args == [HOW_TO_ADD_SOUNDFONT]
    assert states == [False] and not player.is_playing()
