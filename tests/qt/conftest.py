"""Fixtures of the window and canvas tests."""

from __future__ import annotations

import mido
import pytest
from PySide6.QtCore import QObject, Signal

from gdl_studio.core.host import Studio
from gdl_studio.qt.canvases.piano_roll import PianoRollCanvas
from gdl_studio.qt.main_window import MainWindow


@pytest.fixture
def window(qtbot, studio: Studio) -> MainWindow:
    """The studio window over the fixture plugins, shown offscreen."""
    win = MainWindow(studio)
    qtbot.addWidget(win)
    win.show()
    return win


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
