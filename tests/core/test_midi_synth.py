"""Rendering MIDI with a SoundFont."""

from __future__ import annotations

import os
from pathlib import Path

import mido
import numpy as np
import pytest

from gdl_studio.core.midi_notes import Note
from gdl_studio.core.midi_synth import SoundFontError, render_midi, render_notes, wav_bytes
from gdl_studio.core.soundfont import find_soundfonts

RATE = 22050


def _real_soundfont() -> Path | None:
    fonts = [p for p in find_soundfonts() if p.stat().st_size > 100_000]
    return fonts[0] if fonts else None


SF2 = _real_soundfont()
needs_sf2 = pytest.mark.skipif(
    SF2 is None, reason="no General MIDI .sf2 installed (apt install timgm6mb-soundfont)"
)


def _peak(audio: np.ndarray, start: float, end: float) -> float:
    return float(np.abs(audio[int(start * RATE) : int(end * RATE)]).max())


def _two_notes_with_a_gap() -> mido.MidiFile:
    """A piano note 0-1 s, silence 1-3 s, a snare 3-3.5 s (at 120 bpm, 480 ticks a beat)."""
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    midi.tracks.append(mido.MidiTrack([
        mido.Message("program_change", channel=0, program=0, time=0),
        mido.Message("note_on", channel=0, note=60, velocity=110, time=0),
        mido.Message("note_off", channel=0, note=60, time=960),
    ]))  # fmt: skip
    midi.tracks.append(mido.MidiTrack([
        mido.Message("note_on", channel=9, note=38, velocity=110, time=2880),
        mido.Message("note_off", channel=9, note=38, time=480),
    ]))  # fmt: skip
    return midi


@needs_sf2
def test_render_is_loud_during_notes_and_quiet_in_the_gap() -> None:
    assert SF2 is not None
    audio = render_midi(_two_notes_with_a_gap(), SF2, samplerate=RATE, tail=0.5)
    assert audio.dtype == np.float32 and audio.shape == (int(3.5 * RATE) + int(0.5 * RATE), 2)
    assert _peak(audio, 0.05, 0.9) > 0.01
    assert _peak(audio, 3.0, 3.4) > 0.01  # the drum channel plays too
    assert _peak(audio, 2.0, 2.95) < 0.001  # the piano's release has died away


@needs_sf2
def test_render_notes_and_max_seconds() -> None:
    assert SF2 is not None
    audio = render_notes([Note(72, 0.0, 0.5, 100, 0, 0)], SF2, samplerate=RATE, tail=0.0)
    assert audio.shape[0] == int(0.5 * RATE)
    assert _peak(audio, 0.0, 0.5) > 0.01
    capped = render_midi(_two_notes_with_a_gap(), SF2, samplerate=RATE, tail=0.0, max_seconds=1.0)
    assert capped.shape[0] == RATE


def test_random_bytes_are_not_a_soundfont(tmp_path: Path) -> None:
    bad = tmp_path / "noise.sf2"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(SoundFontError, match=r"noise\.sf2"):
        render_midi(_two_notes_with_a_gap(), bad)


def test_missing_soundfont(tmp_path: Path) -> None:
    with pytest.raises(SoundFontError, match="not found"):
        render_midi(_two_notes_with_a_gap(), tmp_path / "gone.sf2")


def test_wav_bytes_is_a_16_bit_stereo_wave_file() -> None:
    import io
    import wave

    frames = np.array([[0.0, 0.5], [-0.5, 1.0], [2.0, -3.0]], dtype=np.float32)
    with wave.open(io.BytesIO(wav_bytes(frames, RATE)), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, RATE)
        assert w.getnframes() == 3
        pcm = np.frombuffer(w.readframes(3), dtype="<i2").reshape(3, 2)
    # Full scale is 32767; what went past it is clipped, not wrapped round.
    assert pcm.tolist() == [[0, 16384], [-16384, 32767], [32767, -32767]]


@needs_sf2
def test_render_reports_its_progress() -> None:
    assert SF2 is not None
    seen: list[float] = []
    render_midi(_two_notes_with_a_gap(), SF2, samplerate=RATE, tail=0.5, progress=seen.append)
    assert len(seen) > 3 and seen == sorted(seen) and seen[-1] == 1.0
