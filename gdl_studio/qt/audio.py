"""Playing MIDI: render it with a SoundFont off the UI thread, then play the PCM (QtMultimedia)."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import mido
import numpy as np
from PySide6.QtCore import QIODevice, QObject, QTimer, Signal

from gdl_studio.core.midi_synth import RenderCancelled, SoundFontError, render_midi
from gdl_studio.core.soundfont import HOW_TO_ADD_SOUNDFONT

SAMPLERATE = 44100
NO_DEVICE = "No audio output device was found, so MIDI cannot be played."


def _multimedia() -> Any:
    """QtMultimedia, imported on first use: it needs system audio libraries (PulseAudio on
    Linux) that a headless machine may lack, and the studio must still start without them."""
    from PySide6 import QtMultimedia

    return QtMultimedia


class _PcmDevice(QIODevice):
    """Serves PCM frames to a QAudioSink in pull mode, wrapping around when looping.

    QBuffer cannot wrap, and restarting a sink at each loop end leaves a gap (and stalled on
    PulseAudio), so this small device is written by hand.
    """

    def __init__(self, pcm: np.ndarray, pos: int, loop: bool, parent: QObject | None) -> None:
        super().__init__(parent)
        self._data = memoryview(np.ascontiguousarray(pcm)).cast("B")
        self._pos = min(max(0, pos), len(self._data))
        self._loop = loop and len(self._data) > 0

    def isSequential(self) -> bool:
        return True

    def bytesAvailable(self) -> int:
        left = len(self._data) if self._loop else len(self._data) - self._pos
        return left + super().bytesAvailable()

    def readData(self, maxlen: int) -> bytes:
        out = bytearray()
        while len(out) < maxlen:
            if self._pos >= len(self._data):
                if not self._loop:
                    break
                self._pos = 0
            chunk = self._data[self._pos : self._pos + maxlen - len(out)]
            out += chunk
            self._pos += len(chunk)
        return bytes(out)

    def writeData(self, data: bytes, size: int) -> int:
        return -1  # read-only


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
        self._device: _PcmDevice | None = None
        self._segment_start = 0.0  # file time of the device's first frame
        self._offset = 0.0  # seconds into the segment where playback began
        self._loop: tuple[float, float] | None = None
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
        problem = self._output_problem()
        if problem is not None:
            self._fail(problem)
            return
        if loop is not None and loop[1] - loop[0] < 0.05:
            loop = None
        self._playing = True
        self.state_changed.emit(True)
        self._request = (midi, start, loop)
        rate = self._output_rate()
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
        if self._device is not None:
            self._device.close()
            self._device = None
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
    def _output_problem(self) -> str | None:
        """Why nothing can be played on this machine, or None when there is an output."""
        try:
            mm = _multimedia()
        except ImportError as exc:
            return f"Audio output is unavailable (QtMultimedia could not load: {exc})."
        if mm.QMediaDevices.defaultAudioOutput().isNull():
            return NO_DEVICE
        return None

    def _output_rate(self) -> int:
        """The sample rate to render at: the one the output will be opened with."""
        fmt = self._format()
        return int(fmt.sampleRate()) if fmt is not None else SAMPLERATE

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
        # Without a loop the device plays start..end once; with one it plays the loop's frames
        # from `start` and wraps around, so the sink never restarts and the loop has no gap.
        first, last = (loop[0], loop[1]) if loop else (start, length)
        segment = pcm[round(first * rate) : round(last * rate)]
        if fmt.sampleFormat() == mm.QAudioFormat.SampleFormat.Int16:
            segment = (np.clip(segment, -1.0, 1.0) * 32767).astype(np.int16)
        self._loop = loop
        self._segment_start = first
        self._offset = start - first
        self._rate, self._fmt = rate, fmt
        self._device = _PcmDevice(
            segment, round(self._offset * rate) * fmt.bytesPerFrame(), loop is not None, self
        )
        self._device.open(QIODevice.OpenModeFlag.ReadOnly)
        self._sink = mm.QAudioSink(mm.QMediaDevices.defaultAudioOutput(), fmt, self)
        # The end of the data is found by polling the sink's state in _tick: PySide6 cannot
        # convert the QAudio::State argument of stateChanged for a Python slot.
        self._sink.start(self._device)
        if self._sink.error() != mm.QtAudio.Error.NoError:
            self._fail(f"The audio output could not be opened ({self._sink.error().name}).")
            return
        self._timer.start()

    def _position(self) -> float:
        """File time of what the sink has played (processedUSecs, not what was read ahead)."""
        played = self._offset + self._sink.processedUSecs() / 1e6
        if self._loop is not None:
            played %= self._loop[1] - self._loop[0]
        return self._segment_start + played

    def _tick(self) -> None:
        if self._sink is None or self._device is None:
            return
        self.position_changed.emit(self._position())
        mm = _multimedia()
        state, error = self._sink.state(), self._sink.error()
        if state == mm.QtAudio.State.IdleState and self._device.atEnd():
            self.stop()  # played to the end (an idle sink with data left is just an underrun)
        elif state == mm.QtAudio.State.StoppedState:
            if error != mm.QtAudio.Error.NoError:  # e.g. the device was unplugged
                self._fail(f"Audio playback stopped ({error.name}).")
            else:
                self.stop()

    def _fail(self, message: str) -> None:
        was_playing = self._playing
        self.error.emit(message)
        self.stop()
        if not was_playing:  # still say "not playing": a Play button may have toggled already
            self.state_changed.emit(False)
