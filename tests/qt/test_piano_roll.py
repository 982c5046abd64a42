"""The piano roll: drawing, zoom, playhead, playback controls and export."""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import mido
import numpy as np
import pytest
from PySide6.QtCore import QIODevice, QPoint, QPointF, Qt
from PySide6.QtGui import QColor

from gdl_studio.core.midi_notes import Note
from gdl_studio.core.midi_synth import render_midi
from gdl_studio.core.soundfont import HOW_TO_ADD_SOUNDFONT, find_soundfonts
from gdl_studio.qt import audio
from gdl_studio.qt.audio import MidiPlayer, _PcmDevice
from gdl_studio.qt.canvases.piano_roll import RULER_H, PianoRollCanvas
from tests.qt.conftest import FakePlayer, _midi


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


# -- MidiPlayer ---------------------------------------------------------------------------------
def _sf2() -> Path | None:
    fonts = [p for p in find_soundfonts() if p.stat().st_size > 100_000]
    return fonts[0] if fonts else None


def _audio_outputs() -> list:
    try:
        from PySide6.QtMultimedia import QMediaDevices
    except ImportError:  # QtMultimedia needs libpulse on Linux
        return []
    return list(QMediaDevices.audioOutputs())


def _quiet_output(monkeypatch, player: MidiPlayer, rate: int = 22050) -> list:
    """Pretend an output exists and capture what would be sent to it."""
    handed: list = []
    monkeypatch.setattr(player, "_output_problem", lambda: None)
    monkeypatch.setattr(player, "_output_rate", lambda: rate)
    monkeypatch.setattr(player, "_start_output", lambda pcm, r: handed.append((pcm, r)))
    return handed


def test_pcm_device_plays_once_or_wraps_around_for_a_loop() -> None:
    pcm = np.arange(8, dtype=np.float32).reshape(4, 2)  # 4 frames of 8 bytes
    once = _PcmDevice(pcm, 16, False, None)
    once.open(QIODevice.OpenModeFlag.ReadOnly)
    assert np.frombuffer(once.read(1000).data(), np.float32).tolist() == [4, 5, 6, 7]
    assert once.atEnd()
    looped = _PcmDevice(pcm, 24, True, None)
    looped.open(QIODevice.OpenModeFlag.ReadOnly)
    data = np.frombuffer(looped.read(6 * 8).data(), np.float32)
    assert data.tolist() == [6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1]  # frame 3, then 0, 1, 2, ...
    assert not looped.atEnd()


def test_player_renders_off_the_ui_thread_and_reuses_the_render(qtbot, monkeypatch) -> None:
    sf2 = _sf2()
    if sf2 is None:
        pytest.skip("no General MIDI .sf2 installed (apt install timgm6mb-soundfont)")
    player = MidiPlayer()
    player.set_soundfont(sf2)
    handed = _quiet_output(monkeypatch, player)
    threads: list[int] = []

    def spy(*args, **kwargs):
        threads.append(threading.get_ident())
        return render_midi(*args, **kwargs)

    monkeypatch.setattr(audio, "render_midi", spy)
    states: list[bool] = []
    player.state_changed.connect(states.append)
    player.play(_midi(), 1.0)
    assert player.is_playing() and states == [True]  # "playing" while it renders
    qtbot.waitUntil(lambda: bool(handed), timeout=10_000)
    pcm, rate = handed[0]
    assert rate == 22050 and pcm.dtype == np.float32 and pcm.shape[1] == 2
    assert threads and threads[0] != threading.get_ident()
    assert np.abs(pcm[int(1.1 * rate) : int(1.9 * rate)]).max() > 0.01  # C4 at 1-2 s
    midi = _midi()
    player.play(midi)
    qtbot.waitUntil(lambda: len(handed) == 2, timeout=10_000)
    player.play(midi, 0.5)  # same file again: no second render
    assert len(handed) == 3 and len(threads) == 2
    player.stop()
    assert not player.is_playing() and states[-1] is False


def test_player_reports_a_bad_soundfont(qtbot, monkeypatch, tmp_path: Path) -> None:
    bad = tmp_path / "noise.sf2"
    bad.write_bytes(os.urandom(4096))
    player = MidiPlayer()
    player.set_soundfont(bad)
    handed = _quiet_output(monkeypatch, player)
    with qtbot.waitSignal(player.error, timeout=10_000) as blocker:
        player.play(_midi())
    assert "noise.sf2" in blocker.args[0]
    assert not player.is_playing() and handed == []


def test_player_without_audio_output_says_so(qtbot, monkeypatch) -> None:
    class NoOutput:
        class QMediaDevices:
            @staticmethod
            def defaultAudioOutput():
                return type("Device", (), {"isNull": lambda self: True})()

    player = MidiPlayer()
    player.set_soundfont(Path("/any.sf2"))
    states: list[bool] = []
    player.state_changed.connect(states.append)
    monkeypatch.setattr(audio, "_multimedia", lambda: NoOutput)
    with qtbot.waitSignal(player.error, timeout=1000) as blocker:
        player.play(_midi())
    assert blocker.args == [audio.NO_DEVICE] and states == [False]

    def missing():
        raise ImportError("libpulse.so.0: cannot open shared object file")

    monkeypatch.setattr(audio, "_multimedia", missing)
    with qtbot.waitSignal(player.error, timeout=1000) as blocker:
        player.play(_midi())
    assert "libpulse" in blocker.args[0] and not player.is_playing()


@pytest.mark.skipif(not _audio_outputs(), reason="no audio output device on this machine")
def test_real_sink_loops_and_plays_to_the_end(qtbot) -> None:
    sf2 = _sf2()
    if sf2 is None:
        pytest.skip("no General MIDI .sf2 installed")
    midi = mido.MidiFile(type=0, ticks_per_beat=480)
    midi.tracks.append(mido.MidiTrack([
        mido.Message("note_on", note=72, velocity=100, time=0),
        mido.Message("note_off", note=72, time=240),  # 0.25 s
    ]))  # fmt: skip
    player = MidiPlayer()
    player.set_soundfont(sf2)
    seen: list[float] = []
    player.position_changed.connect(seen.append)
    errors: list[str] = []
    player.error.connect(errors.append)
    player.play(midi, loop=(0.0, 0.2))
    # The playhead wraps from the loop's end back to its start.
    qtbot.waitUntil(lambda: any(b < a - 0.1 for a, b in itertools.pairwise(seen)), timeout=15_000)
    assert errors == [] and all(0.0 <= t <= 0.2 for t in seen)
    player.stop()
    seen.clear()
    with qtbot.waitSignal(player.state_changed, timeout=15_000, check_params_cb=lambda s: not s):
        player.play(midi)  # 0.25 s of notes + 1 s of release, then it stops by itself
    assert errors == [] and seen and max(seen) == pytest.approx(1.25, abs=0.1)


# ------------------------------------------------------------------------------- draw mode


def _row_y(view, pitch: int) -> int:
    return round(view.pitch_to_y(pitch) + view.row_h / 2)


def test_draw_mode_adds_notes_on_the_sixteenth_grid(roll, qtbot) -> None:
    canvas, _ = roll
    view = canvas.view
    canvas.new_drawing()
    assert canvas.drawing() and canvas.notes() == [] and canvas.use_button.isVisible()
    # 120 bpm: a sixteenth is 0.125 s. Press a little after 1.0 s, drag to a little before 1.5.
    y = _row_y(view, 64)
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(round(view.time_to_x(1.03)), y))
    qtbot.mouseMove(view, QPoint(round(view.time_to_x(1.45)), y))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(round(view.time_to_x(1.45)), y))
    (note,) = canvas.notes()
    assert note.pitch == 64
    assert note.start == pytest.approx(1.0) and note.end == pytest.approx(1.5)
    # A click without a drag is one sixteenth.
    x = round(view.time_to_x(2.06))
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(x, _row_y(view, 67)))
    assert [(n.pitch, round(n.start, 3), round(n.end, 3)) for n in canvas.notes()] == [
        (64, 1.0, 1.5),
        (67, 2.0, 2.125),
    ]
    assert canvas.edited and canvas.midi() is None


def test_clicking_a_drawn_note_removes_it_and_ctrl_z_brings_it_back(roll, qtbot) -> None:
    canvas, player = roll
    view = canvas.view
    before = canvas.notes()  # C4 1-2 s and G4 3-4 s
    canvas.set_drawing(True)
    centre = canvas.view.note_rect(before[0]).center().toPoint()
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=centre)
    assert [n.pitch for n in canvas.notes()] == [67]
    centre = canvas.view.note_rect(canvas.notes()[0]).center().toPoint()
    qtbot.mouseClick(view, Qt.MouseButton.RightButton, pos=centre)
    assert canvas.notes() == []
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert canvas.notes() == before
    canvas.play()
    assert player.plays[-1][0] is not None  # the edited notes play (rendered from the notes)
    qtbot.keyClick(canvas, Qt.Key.Key_D)
    assert not canvas.drawing() and not canvas.use_button.isVisible()


def test_a_melody_drawn_on_another_tempo_keeps_its_beats(qtbot) -> None:
    canvas = PianoRollCanvas(FakePlayer())
    qtbot.addWidget(canvas)
    canvas.resize(800, 400)
    canvas.show()
    qtbot.waitExposed(canvas)
    midi = mido.MidiFile(type=0, ticks_per_beat=480)  # 80 bpm: a beat is 0.75 s
    midi.tracks.append(mido.MidiTrack([
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(80)),
        mido.Message("note_on", note=60, velocity=100, time=0),
        mido.Message("note_off", note=60, time=480 * 8),
    ]))  # fmt: skip
    canvas.set_midi(midi)
    canvas.new_drawing()
    view = canvas.view
    y = _row_y(view, 61)
    a, b = round(view.time_to_x(0.76)), round(view.time_to_x(1.49))  # beat 2, to the end of it
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(a, y))
    qtbot.mouseMove(view, QPoint(b, y))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(b, y))
    out = canvas.drawn_midi()
    tempo = next(m.tempo for m in out.tracks[0] if m.type == "set_tempo")
    assert tempo == mido.bpm2tempo(80)
    ticks = [0]
    for m in out.tracks[0]:
        ticks.append(ticks[-1] + m.time)
    on = [t for t, m in zip(ticks[1:], out.tracks[0], strict=True) if m.type == "note_on"]
    off = [t for t, m in zip(ticks[1:], out.tracks[0], strict=True) if m.type == "note_off"]
    assert on == [480] and off == [960]  # exactly the second beat
