"""Playing MIDI: render it with a SoundFont off the UI thread, then play the PCM (QtMultimedia)."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import mido
import numpy as np
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QObject, QTimer, Signal

from gdl_studio.core.midi_synth import RenderCancelled, SoundFontError, render_midi
from gdl_studio.core.soundfont import HOW_TO_ADD_SOUNDFONT

SAMPLERATE = 44100
NO_DEVICE = "No audio output device was found, so MIDI cannot be played."


def _multimedia() -> Any:
    """QtMultimedia, imported on first use: it needs system audio libraries (PulseAudio on
    Linux) that a headless machine may lack, and the studio must still start without them."""
    from PySide6 import QtMultimedia

    return QtMultimedia


class MidiPlayer(QObject):
    """Plays a MIDI file through the default audio output, optionally looping a range."""

    position_changed = Signal(float)  # seconds into the file, ~30 times a second
    state_changed = Signal(bool)  # True while playing (including while rendering)
    error = Signal(str)
    _rendered = Signal(int, object, str)  # token, (pcm, samplerate) or None, error message

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._soundfont: Path | None = None
        self._playing = False
        self._token = 0  # bumped by play()/stop() so a stale render is ignored
        self._cancel = threading.Event()
        self._cache: tuple[mido.MidiFile, Path, int, np.ndarray] | None = None
        self._request: tuple[mido.MidiFile, float, tuple[float, float] | None] | None = None
        self._sink: Any = None
        self._buffer: QBuffer | None = None
        self._segment_start = 0.0  # file time of the buffer's first frame
        self._loop: tuple[float, float] | None = None
        self._pcm = np.zeros((0, 2), np.float32)  # the whole rendered file, for loop restarts
        self._rate = SAMPLERATE
        self._fmt: Any = None
        self._timer = QTimer(self)
        self._timer.setInterval(33)
        self._timer.timeout.connect(self._tick)
        self._rendered.connect(self._on_rendered)

    # -- public API ---------------------------------------------------------------------------
    def set_soundfont(self, path: Path | None) -> None:
        self._soundfont = Path(path) if path else None
        self._cache = None

    def soundfont(self) -> Path | None:
        return self._soundfont

    def is_playing(self) -> bool:
        return self._playing

    def play(
        self, midi: mido.MidiFile, start: float = 0.0, loop: tuple[float, float] | None = None
    ) -> None:
        """Start playing ``midi`` at ``start`` seconds; with ``loop`` (a, b), repeat a..b."""
        self.stop()
        if self._soundfont is None:
            self._fail(HOW_TO_ADD_SOUNDFONT)
            return
        try:
            mm = _multimedia()
        except ImportError as exc:
            self._fail(f"Audio output is unavailable (QtMultimedia could not load: {exc}).")
            return
        if mm.QMediaDevices.defaultAudioOutput().isNull():
            self._fail(NO_DEVICE)
            return
        if loop is not None and loop[1] - loop[0] < 0.05:
            loop = None
        self._playing = True
        self.state_changed.emit(True)
        self._request = (midi, start, loop)
        fmt = self._format()
        rate = fmt.sampleRate() if fmt is not None else SAMPLERATE
        cache = self._cache
        if cache and cache[0] is midi and cache[1] == self._soundfont and cache[2] == rate:
            self._start_output(cache[3], rate)
            return
        self._token += 1
        self._cancel = threading.Event()
        threading.Thread(
            target=self._render,
            args=(self._token, midi, self._soundfont, rate, self._cancel),
            name="midi-render",
            daemon=True,
        ).start()

    def stop(self) -> None:
        self._token += 1
        self._cancel.set()
        self._timer.stop()
        if self._sink is not None:
            self._sink.stop()
            self._sink.deleteLater()
            self._sink = None
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None
        if self._playing:
            self._playing = False
            self.state_changed.emit(False)

    # -- rendering (worker thread) ------------------------------------------------------------
    def _render(
        self, token: int, midi: mido.MidiFile, sf: Path, rate: int, cancel: threading.Event
    ) -> None:
        try:
            pcm = render_midi(midi, sf, samplerate=rate, should_stop=cancel.is_set)
            result, message = (pcm, rate), ""
        except RenderCancelled:
            return
        except (SoundFontError, ValueError, OSError) as exc:
            result, message = None, str(exc)
        except Exception as exc:  # a bad file must not kill the thread silently
            result, message = None, f"MIDI could not be rendered: {exc}"
        with contextlib.suppress(RuntimeError):  # the player was deleted while rendering
            self._rendered.emit(token, result, message)

    def _on_rendered(self, token: int, result: Any, message: str) -> None:
        if token != self._token or not self._playing or self._request is None:
            return
        if result is None:
            self._fail(message)
            return
        pcm, rate = result
        if self._soundfont is not None:
            self._cache = (self._request[0], self._soundfont, rate, pcm)
        self._start_output(pcm, rate)

    # -- output -------------------------------------------------------------------------------
    def _format(self) -> Any:
        """Stereo float at 44.1 kHz, or the nearest the device accepts (Float or Int16)."""
        mm = _multimedia()
        device = mm.QMediaDevices.defaultAudioOutput()
        fmt = mm.QAudioFormat()
        fmt.setChannelCount(2)
        fmt.setSampleRate(SAMPLERATE)
        fmt.setSampleFormat(mm.QAudioFormat.SampleFormat.Float)
        if device.isFormatSupported(fmt):
            return fmt
        fmt.setSampleRate(device.preferredFormat().sampleRate() or SAMPLERATE)
        for sample in (mm.QAudioFormat.SampleFormat.Float, mm.QAudioFormat.SampleFormat.Int16):
            fmt.setSampleFormat(sample)
            if device.isFormatSupported(fmt):
                return fmt
        return None

    def _start_output(self, pcm: np.ndarray, rate: int) -> None:
        assert self._request is not None
        mm = _multimedia()
        fmt = self._format()
        if fmt is None:
            self._fail("The audio output accepts no stereo Float or Int16 format.")
            return
        _midi, start, loop = self._request
        length = len(pcm) / rate
        if loop is not None:
            a, b = max(0.0, loop[0]), min(loop[1], length)
            loop = (a, b) if b - a >= 0.05 else None
            if loop is not None and not a <= start < b:
                start = a
        start = min(max(0.0, start), length)
        end = loop[1] if loop else length
        segment = pcm[round(start * rate) : round(end * rate)]
        if fmt.sampleFormat() == mm.QAudioFormat.SampleFormat.Int16:
            segment = (segment * 32767).astype(np.int16)
        self._loop = loop
        self._segment_start = start
        self._pcm, self._rate, self._fmt = pcm, rate, fmt
        self._open(segment.tobytes())

    def _open(self, data: bytes) -> None:
        mm = _multimedia()
        self._buffer = QBuffer(self)
        self._buffer.setData(QByteArray(data))
        self._buffer.open(QIODevice.OpenModeFlag.ReadOnly)
        self._sink = mm.QAudioSink(mm.QMediaDevices.defaultAudioOutput(), self._fmt, self)
        # The end of the data is found by polling the sink's state in _tick: PySide6 cannot
        # convert the QAudio::State argument of stateChanged for a Python slot.
        self._sink.start(self._buffer)
        if self._sink.error() != mm.QtAudio.Error.NoError:
            self._fail(f"The audio output could not be opened ({self._sink.error().name}).")
            return
        self._timer.start()

    def _sink_state(self, state: Any) -> None:
        mm = _multimedia()
        if self._sink is None or state != mm.QtAudio.State.IdleState:
            return
        if self._buffer is None or not self._buffer.atEnd():
            return  # an underrun, not the end of the data
        if self._loop is None:
            self.position_changed.emit(self._segment_start + len(self._buffer.data()) / self._bpf())
            self.stop()
            return
        # QBuffer cannot wrap around, so the loop restarts the sink on the loop's own PCM.
        a, b = self._loop
        segment = self._pcm[round(a * self._rate) : round(b * self._rate)]
        if self._fmt.sampleFormat() == mm.QAudioFormat.SampleFormat.Int16:
            segment = (segment * 32767).astype(np.int16)
        self._sink.stop()
        self._sink.deleteLater()
        self._buffer.close()
        self._segment_start = a
        self._open(segment.tobytes())

    def _bpf(self) -> float:
        """Bytes per second of the buffer's PCM."""
        return float(self._fmt.bytesPerFrame() * self._rate)

    def _tick(self) -> None:
        if self._sink is not None:
            self.position_changed.emit(self._segment_start + self._sink.processedUSecs() / 1e6)
            self._sink_state(self._sink.state())

    def _fail(self, message: str) -> None:
        was_playing = self._playing
        self.error.emit(message)
        self.stop()
        if not was_playing:  # still say "not playing": a Play button may have toggled already
            self.state_changed.emit(False)
