"""Rendering MIDI to stereo PCM with a SoundFont, through TinySoundFont."""

from __future__ import annotations

import io
import wave
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import mido
import numpy as np

from gdl_studio.core.midi_notes import DRUM_CHANNEL, Note, notes_to_midi, timed_messages

CHUNK = 8192  # frames per generate() call: short enough that a cancel is noticed quickly


class SoundFontError(Exception):
    """The SoundFont is missing or unreadable, or the synthesiser is not installed."""


class RenderCancelled(Exception):
    """``should_stop`` asked the render to stop."""


def _load_synth(soundfont: Path, samplerate: int) -> Any:
    try:
        import tinysoundfont  # optional: installed without PyAudio by scripts/bootstrap.py
    except ImportError as exc:
        raise SoundFontError(
            "MIDI playback needs TinySoundFont: pip install --no-deps tinysoundfont"
        ) from exc
    path = Path(soundfont)
    if not path.is_file():
        raise SoundFontError(f"SoundFont not found: {path}")
    synth = tinysoundfont.Synth(gain=0, samplerate=samplerate)
    try:
        sfid = synth.sfload(str(path))
        for chan in range(16):
            drums = chan == DRUM_CHANNEL
            synth.program_select(chan, sfid, 128 if drums else 0, 0, is_drums=drums)
    except (RuntimeError, tinysoundfont.SoundFontException) as exc:
        raise SoundFontError(f"{path.name} is not a usable SoundFont (.sf2): {exc}") from exc
    return synth


def _apply(synth: Any, msg: mido.Message) -> None:
    """Send one MIDI message to the synthesiser; unknown programs fall back to piano/kit 0."""
    kind = msg.type
    if kind == "note_on" and msg.velocity > 0:
        synth.noteon(msg.channel, msg.note, msg.velocity)
    elif kind in ("note_on", "note_off"):
        synth.noteoff(msg.channel, msg.note)
    elif kind == "program_change":
        drums = msg.channel == DRUM_CHANNEL
        try:
            synth.program_change(msg.channel, msg.program, is_drums=drums)
        except RuntimeError:  # the font lacks this program (or this bank): keep playing
            synth.program_change(msg.channel, 0, is_drums=drums)
    elif kind == "control_change":
        synth.control_change(msg.channel, msg.control, msg.value)
    elif kind == "pitchwheel":
        synth.pitchbend(msg.channel, msg.pitch + 8192)  # mido is -8192..8191, TSF 0..16383


def render_midi(
    midi: mido.MidiFile,
    soundfont: Path,
    samplerate: int = 44100,
    tail: float = 1.0,
    max_seconds: float = 1200,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """``midi`` as float32 stereo frames, shape (n, 2), plus ``tail`` seconds of release.

    Only the first ``max_seconds`` are rendered (memory: 20 minutes is ~420 MB).
    ``should_stop`` is polled between chunks; when it returns True, RenderCancelled is raised.
    ``progress`` is told the fraction rendered after each chunk.
    Raises SoundFontError for a missing or invalid SoundFont.
    """
    synth = _load_synth(soundfont, samplerate)
    events: list[tuple[float, mido.Message]] = []
    now = 0.0
    for now, msg in timed_messages(midi):  # tracks merged, tempo changes applied
        if now > max_seconds:
            break
        if not msg.is_meta:
            events.append((now, msg))
    total = int(min(now, max_seconds) * samplerate) + int(tail * samplerate)
    total = min(total, int((max_seconds + tail) * samplerate))
    out = np.zeros((total, 2), dtype=np.float32)
    done = 0

    def fill_to(frame: int) -> None:
        nonlocal done
        frame = min(frame, total)
        while done < frame:
            if should_stop is not None and should_stop():
                raise RenderCancelled()
            n = min(CHUNK, frame - done)
            pcm = np.frombuffer(synth.generate(n), dtype=np.float32)
            out[done : done + n] = pcm.reshape(n, 2)
            done += n
            if progress is not None:
                progress(done / total)

    for when, msg in events:
        fill_to(round(when * samplerate))
        _apply(synth, msg)
    fill_to(total)
    np.clip(out, -1.0, 1.0, out=out)  # many loud voices can sum past full scale
    return out


def render_notes(
    notes: Iterable[Note],
    soundfont: Path,
    samplerate: int = 44100,
    tail: float = 1.0,
    max_seconds: float = 1200,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Like render_midi, for a list of notes (e.g. a streaming preview)."""
    midi = notes_to_midi(list(notes))
    return render_midi(midi, soundfont, samplerate, tail, max_seconds, should_stop)


def wav_bytes(frames: np.ndarray, samplerate: int) -> bytes:
    """Stereo float frames in [-1, 1] (as render_midi gives them) as a 16-bit PCM .wav file,
    the format every audio editor and DAW opens (through the standard library's wave)."""
    pcm = np.round(np.clip(frames, -1.0, 1.0) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(pcm.shape[1])
        out.setsampwidth(2)
        out.setframerate(samplerate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()
