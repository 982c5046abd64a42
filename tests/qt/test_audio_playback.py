"""Real playback through QtMultimedia to the system's default output (in CI a PulseAudio null
sink started by .ci/run): the playhead follows what the device really consumed."""

from __future__ import annotations

import os
from pathlib import Path

import mido
import pytest

from gdl_studio.core.soundfont import find_soundfonts


def _outputs() -> list[str]:
    try:
        from PySide6.QtMultimedia import QMediaDevices
    except ImportError:
        return []
    return [d.description() for d in QMediaDevices.audioOutputs()]


def scale() -> mido.MidiFile:
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    for note in (60, 64, 67, 72):  # four eighth notes at 120 bpm: 1.0 s of music
        track.append(mido.Message("note_on", note=note, velocity=90, time=0))
        track.append(mido.Message("note_off", note=note, velocity=0, time=240))
    return midi


def test_playback_runs_to_the_end_on_a_real_output(qtbot) -> None:
    if not _outputs():
        pytest.skip("no audio output device (.ci/run starts a PulseAudio null sink)")
    fonts = find_soundfonts()
    if not fonts:
        pytest.skip("no General MIDI SoundFont installed (.ci/run installs one)")
    from gdl_studio.qt.audio import MidiPlayer

    player = MidiPlayer()
    player.set_soundfont(Path(fonts[0]))
    positions: list[float] = []
    errors: list[str] = []
    player.position_changed.connect(positions.append)
    player.error.connect(errors.append)
    with qtbot.waitSignal(player.state_changed, timeout=15_000,
                          check_params_cb=lambda playing: not playing):  # fmt: skip
        player.play(scale())
    assert errors == []
    assert len(positions) > 10, "the playhead did not move during playback"
    assert positions == sorted(positions)
    assert positions[-1] >= 1.0  # the whole piece (plus the release tail) was consumed
    assert not player.is_playing()
    assert os.environ.get("QT_QPA_PLATFORM") == "offscreen"
