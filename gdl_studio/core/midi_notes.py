"""Notes, timing and the bar/beat grid of a MIDI file, in seconds (no Qt).

mido parses and writes the files; what it does not offer is a note list (note_on/note_off
pairs), so that pairing and the tick-to-seconds map over tempo changes are written here.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import mido

MAX_NOTES = 200_000
MAX_SECONDS = 2 * 60 * 60.0
DEFAULT_TEMPO = 500_000  # microseconds per beat: 120 bpm, the MIDI default
DRUM_CHANNEL = 9  # channel 10 in the 1-based numbering musicians use


@dataclass(frozen=True)
class Note:
    """One sounding note; times in seconds from the start of the file."""

    pitch: int
    start: float
    end: float
    velocity: int
    channel: int
    program: int

    @property
    def duration(self) -> float:
        return self.end - self.start


class TempoMap:
    """Converts absolute ticks to seconds across tempo changes.

    Each segment's start time is computed from ticks, never by summing float deltas, so a
    note's time does not drift however many events come before it.
    """

    def __init__(self, ticks_per_beat: int, changes: Iterable[tuple[int, int]] = ()) -> None:
        if ticks_per_beat <= 0:
            raise ValueError(f"the MIDI file has an invalid time division ({ticks_per_beat})")
        self.ticks_per_beat = ticks_per_beat
        self._ticks = [0]
        self._tempos = [DEFAULT_TEMPO]
        self._seconds = [0.0]
        for tick, tempo in sorted(changes, key=lambda c: c[0]):
            if tempo <= 0:
                continue
            if tick == self._ticks[-1]:  # several tempos at one tick: the last one wins
                self._tempos[-1] = tempo
                continue
            self._seconds.append(self.seconds(tick))
            self._ticks.append(tick)
            self._tempos.append(tempo)

    def seconds(self, tick: int) -> float:
        i = bisect.bisect_right(self._ticks, tick) - 1
        return self._seconds[i] + mido.tick2second(
            tick - self._ticks[i], self.ticks_per_beat, self._tempos[i]
        )

    def tick(self, seconds: float) -> float:
        """The (fractional) tick at ``seconds``; the inverse of :meth:`seconds`."""
        i = max(0, bisect.bisect_right(self._seconds, seconds) - 1)
        return self._ticks[i] + mido.second2tick(
            seconds - self._seconds[i], self.ticks_per_beat, self._tempos[i]
        )


def _merged(midi: mido.MidiFile) -> list[tuple[int, mido.Message]]:
    """All messages with absolute ticks, in play order (merged like mido plays them)."""
    out: list[tuple[int, mido.Message]] = []
    tick = 0
    for msg in mido.merge_tracks(midi.tracks):
        tick += msg.time
        out.append((tick, msg))
    return out


def timed_messages(midi: mido.MidiFile) -> Iterator[tuple[float, mido.Message]]:
    """Yield ``(seconds, message)`` in play order, tempo changes applied.

    Like ``for msg in midi`` but with absolute, drift-free times, and type 2 files (separate
    songs per track, which mido refuses to merge) are played one track after another.
    """
    if midi.type == 2:
        offset = 0.0
        for track in midi.tracks:
            single = mido.MidiFile(type=1, ticks_per_beat=midi.ticks_per_beat)
            single.tracks.append(track)
            last = offset
            for seconds, msg in timed_messages(single):
                last = offset + seconds
                yield last, msg
            offset = last
        return
    merged = _merged(midi)
    tempo = TempoMap(
        midi.ticks_per_beat, ((t, m.tempo) for t, m in merged if m.type == "set_tempo")
    )
    for tick, msg in merged:
        yield tempo.seconds(tick), msg


def midi_duration(midi: mido.MidiFile) -> float:
    """Length in seconds: the time of the last event (end_of_track included)."""
    last = 0.0
    for seconds, _ in timed_messages(midi):
        last = seconds
    return last


def notes_from_midi(
    midi: mido.MidiFile, max_notes: int = MAX_NOTES, max_seconds: float = MAX_SECONDS
) -> list[Note]:
    """The notes of ``midi`` sorted by start time.

    A note_on with velocity 0 is a note_off.  Overlapping notes of one pitch on one channel are
    closed first-in, first-out; notes never switched off end where the file ends.  Raises
    ``ValueError`` for files with more than ``max_notes`` notes or longer than ``max_seconds``.
    """
    notes: list[Note] = []
    program = [0] * 16
    # (channel, pitch) -> open notes as (start, velocity, program), oldest first
    held: dict[tuple[int, int], deque[tuple[float, int, int]]] = defaultdict(deque)
    end = 0.0
    count = 0
    for seconds, msg in timed_messages(midi):
        if seconds > max_seconds:
            raise ValueError(
                f"the MIDI file is longer than the {max_seconds / 60:.0f} minutes that can be shown"
            )
        end = seconds
        kind = msg.type
        if kind == "program_change":
            program[msg.channel] = msg.program
        elif kind == "note_on" and msg.velocity > 0:
            count += 1
            if count > max_notes:
                raise ValueError(f"the MIDI file has more than {max_notes:,} notes")
            held[msg.channel, msg.note].append((seconds, msg.velocity, program[msg.channel]))
        elif kind in ("note_on", "note_off"):
            queue = held.get((msg.channel, msg.note))
            if queue:
                start, velocity, prog = queue.popleft()
                notes.append(Note(msg.note, start, seconds, velocity, msg.channel, prog))
    for (channel, pitch), queue in held.items():
        for start, velocity, prog in queue:
            notes.append(Note(pitch, start, max(end, start), velocity, channel, prog))
    notes.sort(key=lambda n: (n.start, n.pitch, n.channel))
    return notes


def notes_to_midi(
    notes: Iterable[Note], ticks_per_beat: int = 480, tempo: int = DEFAULT_TEMPO
) -> mido.MidiFile:
    """A type 0 MIDI file that plays ``notes`` (for previews, playback and drawn melodies) at
    ``tempo`` microseconds a beat (default 120 bpm): the notes keep their times in seconds,
    and a melody drawn on a grid of another tempo keeps its beats.

    Notes come from decoders fed by a network, so every value is clipped into what a MIDI
    file can hold (times into 0..MAX_SECONDS, pitch/velocity/program into 0..127, channel into
    0..15); a note with a time that is not a finite number is dropped.  Whatever the tokens,
    the file can be saved and read back.
    """
    tempo_map = TempoMap(ticks_per_beat, [(0, tempo)])
    # (tick, order, message): at one tick, note_offs go before program changes and note_ons,
    # so a note repeated back to back is released before it is struck again.
    events: list[tuple[int, int, mido.Message]] = []
    for n in notes:
        if not (math.isfinite(n.start) and math.isfinite(n.end)):
            continue
        start = min(max(float(n.start), 0.0), MAX_SECONDS)
        on = round(tempo_map.tick(start))
        off = max(on, round(tempo_map.tick(min(max(float(n.end), start), MAX_SECONDS))))
        ch, pitch = int(n.channel) & 15, _data_byte(n.pitch)
        program = _data_byte(n.program)
        events.append((on, 1, mido.Message("program_change", channel=ch, program=program)))
        vel = max(_data_byte(n.velocity), 1)
        events.append((on, 2, mido.Message("note_on", channel=ch, note=pitch, velocity=vel)))
        events.append((off, 0, mido.Message("note_off", channel=ch, note=pitch)))
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo, time=0)])
    current: dict[int, int] = {}
    last = 0
    for tick, _, msg in events:
        if msg.type == "program_change":
            if current.get(msg.channel) == msg.program:
                continue  # only switch instruments when they actually change
            current[msg.channel] = msg.program
        track.append(msg.copy(time=tick - last))
        last = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi = mido.MidiFile(type=0, ticks_per_beat=ticks_per_beat)
    midi.tracks.append(track)
    return midi


def _data_byte(value: int) -> int:
    return min(max(int(value), 0), 127)


def grid_lines(midi: mido.MidiFile | None, until: float) -> list[tuple[float, bool]]:
    """Beat lines up to ``until`` seconds as ``(seconds, is_bar_start)``.

    Follows the file's tempo and time-signature changes; without a file (or for type 2 files,
    whose tracks have separate timelines) it assumes 120 bpm in 4/4.
    """
    if midi is None or midi.type == 2:
        return [(i * 0.5, i % 4 == 0) for i in range(int(until / 0.5) + 1)]
    merged = _merged(midi)
    tpb = midi.ticks_per_beat
    tempo = TempoMap(tpb, ((t, m.tempo) for t, m in merged if m.type == "set_tempo"))
    signatures = [(0, 4, 4)] + [
        (t, m.numerator, m.denominator) for t, m in merged if m.type == "time_signature"
    ]
    lines: list[tuple[float, bool]] = []
    last_tick = tempo.tick(until)
    for i, (start, num, den) in enumerate(signatures):
        stop = signatures[i + 1][0] if i + 1 < len(signatures) else last_tick
        beat = tpb * 4 / max(den, 1)  # a beat is one 1/den note
        k = 0
        while start + k * beat < stop and start + k * beat <= last_tick:
            lines.append((tempo.seconds(round(start + k * beat)), k % max(num, 1) == 0))
            k += 1
            if len(lines) > 100_000:  # a silly signature (1/64 for hours) must not hang
                return lines
    return lines
