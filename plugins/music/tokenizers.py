"""Tokenizers: MIDI <-> token ids for the music transformer (numpy + mido, no torch).

Three schemes, one class each, on a shared base whose grammar is data (``allowed``: which ids
may come at each phase of the cycle), as in MidiTok:

- :class:`ChoraleTokenizer`: four voices (soprano, alto, tenor, bass) on the 16th-note grid,
  serialised step by step, S A T B at every step, exactly as ``Jsb16thSeparated.npz`` holds
  them.  A token is a MIDI pitch or REST (the voice is silent at that step).  A held note is
  its pitch repeated at the following steps: the dataset has no separate hold symbol, so the
  token sequence is the one the published JSB numbers are measured on, and decoding joins
  equal consecutive pitches of a voice into one note (a note struck again at the same pitch
  on the very next 16th is therefore read as held, as it is in the dataset).
- :class:`SoloTokenizer`: one melodic line as (pitch or REST, duration) pairs, the note +
  duration scheme of Foster's cello-suite transformer; durations are whole twelfths of a beat
  (16ths and triplets are exact), from 1/12 to 4 beats; longer notes are split.

- :class:`GeneralTokenizer`: any MIDI file (every instrument but the drums, merged into one
  part) as note events of four tokens — the time since the previous note began, pitch,
  length and loudness — in order of onset (a chord is notes 0 apart), on the 16th grid.

miditok is not used. The chorale and solo schemes are not among its tokenizations, and its
event schemes for any MIDI (REMI, MIDI-like, TSD ...) have no fixed cycle: a Position token
comes only when the time moves and a Velocity or Program token only sometimes, while this
plugin's grammar masks, its cache restarts on a cycle boundary and its length in beats all
rest on a fixed period; its compound schemes (CP Word, Octuple) need one output head per
field.  A four-token note event keeps the decoder single-headed and the grammar a fixed
cycle, and mido, which the app ships already, reads and writes the files.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import mido
import numpy as np

from gdl_studio.core.midi_notes import DRUM_CHANNEL, TempoMap, notes_from_midi

BOS, REST = 0, 1  # every scheme starts with these two ids
TICKS_PER_BEAT = 480
MAX_BEATS = 4 * 60 * 8  # 8 minutes at 240 bpm: more than any piece this plugin makes or reads


@dataclass(frozen=True)
class BeatNote:
    """A note in beats (quarter notes) from the start; ``voice`` is a track/voice index."""

    pitch: int
    start: float
    end: float
    voice: int = 0
    velocity: int = 80


class TokenError(ValueError):
    """A file or a sequence that the tokenizer cannot use (the message says why)."""


class Tokenizer(ABC):
    """What every scheme offers: the vocabulary, the grammar and MIDI in both directions."""

    kind: ClassVar[str]
    period: ClassVar[int]  # tokens per cycle (a grid step, or a note): the grammar's phase
    voice_names: ClassVar[tuple[str, ...]]

    def __init__(self, low: int, high: int) -> None:
        if not 0 <= low <= high <= 127:
            raise ValueError(f"pitch range {low}..{high} is not within 0..127")
        self.low, self.high = low, high

    # ---------------------------------------------------------------- vocabulary

    vocab: list[str]  # token names; a token's id is its index (set by each scheme)

    def __len__(self) -> int:
        return len(self.vocab)

    def pitch_id(self, pitch: int) -> int:
        return 2 + pitch - self.low

    def id_pitch(self, token: int) -> int | None:
        """The MIDI pitch of a pitch token, else None."""
        return self.low + token - 2 if 2 <= token < 2 + self.high - self.low + 1 else None

    def fold(self, pitch: int) -> int:
        """``pitch`` moved by octaves into the tokenizer's range."""
        while pitch < self.low:
            pitch += 12
        while pitch > self.high:
            pitch -= 12
        return pitch

    def config(self) -> dict[str, Any]:
        """What card.json records to rebuild this tokenizer (:func:`tokenizer_from_config`)."""
        return {"kind": self.kind, "low": self.low, "high": self.high}

    # ---------------------------------------------------------------- grammar

    @abstractmethod
    def allowed(self, phase: int) -> np.ndarray:
        """Boolean mask over the vocabulary: the ids the grammar allows at ``phase`` (the
        position after BOS, modulo ``period``)."""

    def grammar_errors(self, ids: Sequence[int]) -> int:
        """How many of ``ids`` (the tokens after BOS) the grammar does not allow where they
        stand."""
        masks = [self.allowed(p) for p in range(self.period)]
        n = len(masks[0])
        return sum(1 for i, t in enumerate(ids) if not (0 <= t < n and masks[i % self.period][t]))

    # ---------------------------------------------------------------- MIDI

    @abstractmethod
    def encode_notes(self, notes: Sequence[BeatNote]) -> list[int]:
        """Token ids (without BOS) for notes timed in beats."""

    @abstractmethod
    def decode_notes(self, ids: Sequence[int]) -> list[BeatNote]:
        """Notes for token ids (without BOS); ids the grammar does not allow are skipped."""

    def encode_midi(self, midi: mido.MidiFile) -> list[int]:
        return self.encode_notes(beat_notes(midi))

    def to_midi(
        self, ids: Sequence[int], tempo_bpm: float = 90.0, program: int = 0
    ) -> mido.MidiFile:
        return write_midi(self.decode_notes(ids), self.voice_names, tempo_bpm, program)

    def steps_per_bar(self) -> int:
        """About how many tokens a 4/4 bar takes (exact for grid schemes)."""
        return 16 * self.period

    @abstractmethod
    def beats_of(self, token: int, phase: int) -> float:
        """How far ``token`` at ``phase`` moves the piece on, in beats (0 for a token that
        does not end a cycle): how generation stops at a length in bars or seconds."""

    @abstractmethod
    def max_tokens_per_beat(self) -> int:
        """The most tokens one beat can take: bounds the tokens of a length in beats."""


class ChoraleTokenizer(Tokenizer):
    """SATB on the 16th-note grid, four tokens per step (see the module docstring)."""

    kind = "chorale"
    period = 4
    voice_names = ("Soprano", "Alto", "Tenor", "Bass")
    STEPS_PER_BEAT = 4

    # Voice ranges of the JSB chorales (soprano 60-81, alto 52-74, tenor 46-69, bass 36-66)
    # widened by the +-6 semitones of the training transpositions; the grammar refuses a
    # pitch outside its voice's range.
    RANGES = ((54, 87), (46, 80), (40, 75), (30, 72))

    def __init__(self, low: int = 28, high: int = 90) -> None:
        super().__init__(low, high)
        self.vocab = ["BOS", "REST", *(f"P{p}" for p in range(low, high + 1))]
        self._masks = []
        for lo, hi in self.RANGES:
            m = np.zeros(len(self.vocab), bool)
            m[REST] = True
            m[self.pitch_id(max(lo, low)) : self.pitch_id(min(hi, high)) + 1] = True
            self._masks.append(m)

    def allowed(self, phase: int) -> np.ndarray:
        return self._masks[phase % 4]

    def encode_grid(self, grid: np.ndarray) -> list[int]:
        """Ids for a [steps, 4] array of pitches (NaN or negative: silent), as in
        Jsb16thSeparated; pitches outside the range are folded by octaves."""
        g = np.asarray(grid, np.float64)
        if g.ndim != 2 or g.shape[1] != 4:
            raise TokenError(f"a chorale grid is [steps, 4], not {list(g.shape)}")
        out = []
        for p in g.reshape(-1):
            out.append(REST if not math.isfinite(p) or p < 0 else self.pitch_id(self.fold(int(p))))
        return out

    def decode_grid(self, ids: Sequence[int]) -> np.ndarray:
        """The [steps, 4] pitch grid (NaN: silent) of ids; a last, incomplete step is padded
        with rests, an id the grammar refuses reads as a rest."""
        steps = -(-len(ids) // 4)
        grid = np.full((steps, 4), np.nan)
        n = len(self)
        for i, t in enumerate(ids):
            t = int(t)
            p = self.id_pitch(t) if 0 <= t < n and self.allowed(i)[t] else None
            if p is not None:
                grid[i // 4, i % 4] = p
        return grid

    def beats_of(self, token: int, phase: int) -> float:
        return 1.0 / self.STEPS_PER_BEAT if phase % 4 == 3 else 0.0  # the bass ends a step

    def max_tokens_per_beat(self) -> int:
        return 4 * self.STEPS_PER_BEAT

    def encode_notes(self, notes: Sequence[BeatNote]) -> list[int]:
        return self.encode_grid(notes_to_grid(notes, self.STEPS_PER_BEAT))

    def decode_notes(self, ids: Sequence[int]) -> list[BeatNote]:
        return grid_to_notes(self.decode_grid(ids), self.STEPS_PER_BEAT)

    def encode_melody(self, notes: Sequence[BeatNote]) -> list[int | None]:
        """Soprano ids for a melody (the highest note sounding at each 16th), one per step,
        for harmonising: the other voices are left to the model."""
        grid = melody_grid(notes, self.STEPS_PER_BEAT)
        return [REST if not math.isfinite(p) else self.pitch_id(self.fold(int(p))) for p in grid]


class SoloTokenizer(Tokenizer):
    """One line as (pitch or REST, duration) pairs; durations in twelfths of a beat."""

    kind = "solo"
    period = 2
    voice_names = ("Solo",)
    UNITS_PER_BEAT = 12
    MAX_UNITS = 48  # four beats; longer notes and rests are split

    def __init__(self, low: int = 24, high: int = 96) -> None:
        super().__init__(low, high)
        self.first_duration = 2 + high - low + 1
        pitches = [f"P{p}" for p in range(low, high + 1)]
        durations = [f"D{k}" for k in range(1, self.MAX_UNITS + 1)]
        self.vocab = ["BOS", "REST", *pitches, *durations]
        n = len(self.vocab)
        self._pitch_mask = np.zeros(n, bool)
        self._pitch_mask[REST : self.first_duration] = True
        self._duration_mask = np.zeros(n, bool)
        self._duration_mask[self.first_duration :] = True

    def allowed(self, phase: int) -> np.ndarray:
        return self._pitch_mask if phase % 2 == 0 else self._duration_mask

    def duration_id(self, units: int) -> int:
        return self.first_duration + units - 1

    def id_units(self, token: int) -> int | None:
        k = token - self.first_duration + 1
        return k if 1 <= k <= self.MAX_UNITS else None

    def steps_per_bar(self) -> int:
        return 2 * 16  # about sixteen notes a bar

    def beats_of(self, token: int, phase: int) -> float:
        units = self.id_units(token) if phase % 2 == 1 else None
        return units / self.UNITS_PER_BEAT if units else 0.0  # a duration ends a pair

    def max_tokens_per_beat(self) -> int:
        return 2 * self.UNITS_PER_BEAT  # every pair one twelfth of a beat long

    def encode_notes(self, notes: Sequence[BeatNote]) -> list[int]:
        u = self.UNITS_PER_BEAT
        line = monophonic(notes, u)
        out: list[int] = []
        now = 0
        for pitch, start, end in line:
            if start > now:
                out += self._pairs(REST, start - now)
            out += self._pairs(self.pitch_id(self.fold(pitch)), end - start)
            now = end
        return out

    def _pairs(self, token: int, units: int) -> list[int]:
        """``token`` for ``units`` twelfths, split into pieces of at most MAX_UNITS (a split
        note continues as rests: the scheme has no tie)."""
        out = []
        first = True
        while units > 0:
            k = min(units, self.MAX_UNITS)
            out += [token if first else REST, self.duration_id(k)]
            first = False
            units -= k
        return out

    def decode_notes(self, ids: Sequence[int]) -> list[BeatNote]:
        notes: list[BeatNote] = []
        now = 0
        pending: int | None = None  # the pitch/REST token waiting for its duration
        for i, t in enumerate(ids):
            t = int(t)
            ok = 0 <= t < len(self) and bool(self.allowed(i)[t])
            if i % 2 == 0:
                pending = t if ok else None
                continue
            units = self.id_units(t) if ok else None
            if pending is None or units is None:
                pending = None
                continue  # a pair with a grammar error is skipped whole
            pitch = self.id_pitch(pending)
            if pitch is not None:
                s = now / self.UNITS_PER_BEAT
                notes.append(BeatNote(pitch, s, (now + units) / self.UNITS_PER_BEAT))
            now += units
            pending = None
        return notes


class GeneralTokenizer(Tokenizer):
    """Any MIDI as (shift, pitch, length, loudness) note events on the 16th-note grid."""

    kind = "general"
    period = 4
    voice_names = ("Music",)
    STEPS_PER_BEAT = 4
    MAX_SHIFT = 64  # sixteenths (four 4/4 bars): a longer silence is shortened to this
    MAX_LENGTH = 64  # sixteenths: a longer note is cut to this
    LOUDNESS = 8  # velocity bins of 16: 1-15, 16-31, ... 112-127
    MAX_CHORD = 16  # notes per beat the length in beats budgets for (chords are 0 apart)

    def __init__(self, low: int = 21, high: int = 108) -> None:
        super().__init__(low, high)
        pitches = [f"P{p}" for p in range(low, high + 1)]
        self.first_shift = 2 + len(pitches)
        self.first_length = self.first_shift + self.MAX_SHIFT + 1
        self.first_loudness = self.first_length + self.MAX_LENGTH
        self.vocab = [
            "BOS",
            "REST",  # unused: kept so that every scheme's pitch ids start at 2
            *pitches,
            *(f"S{k}" for k in range(self.MAX_SHIFT + 1)),
            *(f"L{k}" for k in range(1, self.MAX_LENGTH + 1)),
            *(f"V{k}" for k in range(self.LOUDNESS)),
        ]
        n = len(self.vocab)
        bounds = [
            (self.first_shift, self.first_length),
            (2, self.first_shift),
            (self.first_length, self.first_loudness),
            (self.first_loudness, n),
        ]
        self._masks = []
        for lo, hi in bounds:
            m = np.zeros(n, bool)
            m[lo:hi] = True
            self._masks.append(m)

    def allowed(self, phase: int) -> np.ndarray:
        return self._masks[phase % 4]

    def beats_of(self, token: int, phase: int) -> float:
        k = token - self.first_shift
        if phase % 4 == 0 and 0 <= k <= self.MAX_SHIFT:
            return k / self.STEPS_PER_BEAT  # the time moves as an event begins
        return 0.0

    def max_tokens_per_beat(self) -> int:
        return 4 * self.MAX_CHORD

    def steps_per_bar(self) -> int:
        return 4 * 16  # about one note per sixteenth

    def encode_notes(self, notes: Sequence[BeatNote]) -> list[int]:
        q = self.STEPS_PER_BEAT
        events = sorted({
            (max(0, round(n.start * q)), self.fold(n.pitch),
             min(self.MAX_LENGTH, max(1, round((n.end - n.start) * q))),
             min(self.LOUDNESS - 1, max(0, int(n.velocity) // 16)))
            for n in notes
        }, key=lambda e: (e[0], -e[1]))  # fmt: skip
        out: list[int] = []
        before = 0
        seen: set[tuple[int, int]] = set()
        for start, pitch, length, loud in events:
            if (start, pitch) in seen:  # the same key struck twice at once: once
                continue
            seen.add((start, pitch))
            shift = min(start - before, self.MAX_SHIFT)
            before = start
            out += [
                self.first_shift + shift,
                self.pitch_id(pitch),
                self.first_length + length - 1,
                self.first_loudness + loud,
            ]
        return out

    def decode_notes(self, ids: Sequence[int]) -> list[BeatNote]:
        """The notes of whole events (an event with a grammar error is skipped).  A key
        struck again while it still sounds ends there, and one struck twice at the same time
        sounds once (the longer): one MIDI channel cannot hold more, and the file must read
        back as these notes."""
        q = self.STEPS_PER_BEAT
        notes: list[BeatNote] = []
        sounding: dict[int, int] = {}  # pitch -> index in notes of its latest note
        now = 0
        for i in range(0, len(ids) - len(ids) % 4, 4):
            event = [int(t) for t in ids[i : i + 4]]
            if not all(0 <= t < len(self) and self._masks[k][t] for k, t in enumerate(event)):
                continue
            shift, pitch_id, length_id, loud_id = event
            now += shift - self.first_shift
            pitch = self.id_pitch(pitch_id)
            assert pitch is not None
            note = BeatNote(pitch, now / q, (now + length_id - self.first_length + 1) / q, 0,
                            16 * (loud_id - self.first_loudness) + 8)  # fmt: skip
            k = sounding.get(pitch)
            if k is not None and notes[k].end > note.start:
                if notes[k].start == note.start:  # the same key twice at once: the longer
                    if note.end > notes[k].end:
                        notes[k] = note
                    continue
                notes[k] = replace(notes[k], end=note.start)
            sounding[pitch] = len(notes)
            notes.append(note)
        return notes


SCHEMES: dict[str, type[Tokenizer]] = {
    "chorale": ChoraleTokenizer,
    "solo": SoloTokenizer,
    "general": GeneralTokenizer,
}


def tokenizer_from_config(cfg: dict[str, Any]) -> Tokenizer:
    """The tokenizer card.json's ``tokenizer`` entry describes."""
    try:
        cls = SCHEMES[str(cfg["kind"])]
        return cls(int(cfg["low"]), int(cfg["high"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise TokenError(f"unusable tokenizer description {cfg!r} ({exc})") from None


# ------------------------------------------------------------------------- notes and grids


def beat_notes(midi: mido.MidiFile) -> list[BeatNote]:
    """The pitched notes of ``midi`` (drums left out) in beats, following its tempo changes;
    ``voice`` is the MIDI channel.  Raises :class:`TokenError` when none is left."""
    try:
        notes = notes_from_midi(midi)
    except ValueError as exc:
        raise TokenError(str(exc)) from None
    tick = 0
    changes = []
    for msg in mido.merge_tracks(midi.tracks):
        tick += msg.time
        if msg.type == "set_tempo":
            changes.append((tick, msg.tempo))
    tempo = TempoMap(midi.ticks_per_beat, changes)
    tpb = midi.ticks_per_beat
    out = [
        BeatNote(n.pitch, tempo.tick(n.start) / tpb, tempo.tick(n.end) / tpb, n.channel, n.velocity)
        for n in notes
        if n.channel != DRUM_CHANNEL
    ]
    if not out:
        what = "only drums" if notes else "no notes"
        raise TokenError(f"the MIDI file has {what}: nothing to continue or harmonise")
    if max(n.end for n in out) > MAX_BEATS:
        raise TokenError(f"the MIDI file is longer than {MAX_BEATS} beats")
    return out


def _on_grid(beats: float, per_beat: int) -> int:
    return max(0, math.floor(beats * per_beat + 0.5))


def notes_to_grid(notes: Sequence[BeatNote], per_beat: int = 4) -> np.ndarray:
    """A [steps, 4] SATB pitch grid (NaN: silent) from notes in beats.

    Two to four channels, each playing one note at a time, are voices by channel number
    (lowest number: highest voice; two are S and B, three S A B), as in a chorale file with a
    track per voice; otherwise the sounding pitches of each step are ranked from the top: one
    sounding is the soprano, two the soprano and bass, three S A B, four or more the highest
    three and the lowest."""
    if not notes:
        return np.zeros((0, 4))
    steps = max(_on_grid(n.end, per_beat) for n in notes)
    sounding: list[list[tuple[int, int]]] = [[] for _ in range(steps)]
    for n in notes:
        a, b = _on_grid(n.start, per_beat), _on_grid(n.end, per_beat)
        for s in range(a, max(b, a + 1) if a < steps else a):
            sounding[s].append((n.pitch, n.voice))
    channels = {n.voice for n in notes}
    by_channel = 2 <= len(channels) <= 4 and all(
        len(here) == len({ch for _, ch in here}) for here in sounding
    )  # a few channels, each one line at a time: a file with a track per voice
    if by_channel:  # channel order high to low, whatever the channel numbers are
        order = {c: i for i, c in enumerate(sorted(channels))}
        slots = {0: (0,), 1: (0, 3), 2: (0, 1, 3), 3: (0, 1, 2, 3)}[len(channels) - 1]
    grid = np.full((steps, 4), np.nan)
    for s, here in enumerate(sounding):
        if not here:
            continue
        if by_channel:
            for pitch, ch in here:
                v = slots[order[ch]]
                grid[s, v] = pitch if np.isnan(grid[s, v]) else max(grid[s, v], pitch)
            continue
        ps = sorted({p for p, _ in here}, reverse=True)
        slots_rank = {1: (0,), 2: (0, 3), 3: (0, 1, 3)}.get(len(ps), (0, 1, 2))
        for v, p in zip(slots_rank, ps, strict=False):
            grid[s, v] = p
        if len(ps) >= 4:
            grid[s, 3] = ps[-1]
    return grid


def melody_grid(notes: Sequence[BeatNote], per_beat: int = 4) -> np.ndarray:
    """The highest pitch sounding at each grid step (NaN: none): the melody to harmonise."""
    if not notes:
        return np.zeros(0)
    steps = max(_on_grid(n.end, per_beat) for n in notes)
    out = np.full(steps, np.nan)
    for n in notes:
        a, b = _on_grid(n.start, per_beat), _on_grid(n.end, per_beat)
        for s in range(a, max(b, a + 1)):
            if s < steps and not out[s] >= n.pitch:
                out[s] = n.pitch
    return out


def grid_to_notes(grid: np.ndarray, per_beat: int = 4) -> list[BeatNote]:
    """Notes of a [steps, voices] grid: equal consecutive pitches of a voice are one note."""
    notes = []
    steps = len(grid)
    for v in range(grid.shape[1] if grid.ndim == 2 else 0):
        s = 0
        while s < steps:
            p = grid[s, v]
            if not math.isfinite(p):
                s += 1
                continue
            e = s + 1
            while e < steps and grid[e, v] == p:
                e += 1
            notes.append(BeatNote(int(p), s / per_beat, e / per_beat, v))
            s = e
    notes.sort(key=lambda n: (n.start, n.voice))
    return notes


def monophonic(notes: Sequence[BeatNote], per_beat: int) -> list[tuple[int, int, int]]:
    """(pitch, start, end) in grid units, one note at a time: the highest note of each onset,
    cut where the next onset starts; notes shorter than a unit last one unit."""
    onsets: dict[int, BeatNote] = {}
    for n in notes:
        s = _on_grid(n.start, per_beat)
        if s not in onsets or n.pitch > onsets[s].pitch:
            onsets[s] = n
    starts = sorted(onsets)
    line = []
    for i, s in enumerate(starts):
        n = onsets[s]
        end = max(s + 1, _on_grid(n.end, per_beat))
        if i + 1 < len(starts):
            end = min(end, starts[i + 1])
        line.append((n.pitch, s, end))
    return line


def write_midi(
    notes: Iterable[BeatNote],
    voice_names: Sequence[str],
    tempo_bpm: float = 90.0,
    program: int = 0,
    ticks_per_beat: int = TICKS_PER_BEAT,
) -> mido.MidiFile:
    """A type 1 file: a tempo/4-4 track, then one track and channel per voice (named, with
    ``program``).  Pitches, velocities and the program are clipped into MIDI's 0..127."""
    prog = min(max(int(program), 0), 127)
    tempo = mido.bpm2tempo(min(max(float(tempo_bpm), 10.0), 400.0))
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    head = mido.MidiTrack(
        [
            mido.MetaMessage("set_tempo", tempo=tempo, time=0),
            mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
            mido.MetaMessage("end_of_track", time=0),
        ]
    )
    midi.tracks.append(head)
    by_voice: dict[int, list[BeatNote]] = {}
    for n in notes:
        by_voice.setdefault(n.voice, []).append(n)
    for v in sorted(by_voice) or [0]:
        ch = v % 16 if v % 16 != DRUM_CHANNEL else 10
        events: list[tuple[int, int, mido.Message]] = []
        for n in by_voice.get(v, []):
            on = round(max(n.start, 0.0) * ticks_per_beat)
            off = max(on + 1, round(n.end * ticks_per_beat))
            pitch, vel = min(max(int(n.pitch), 0), 127), min(max(int(n.velocity), 1), 127)
            events.append((on, 1, mido.Message("note_on", channel=ch, note=pitch, velocity=vel)))
            events.append((off, 0, mido.Message("note_off", channel=ch, note=pitch)))
        events.sort(key=lambda e: (e[0], e[1]))
        name = voice_names[v] if v < len(voice_names) else f"Voice {v + 1}"
        track = mido.MidiTrack(
            [
                mido.MetaMessage("track_name", name=name, time=0),
                mido.Message("program_change", channel=ch, program=prog, time=0),
            ]
        )
        last = 0
        for tick, _, msg in events:
            track.append(msg.copy(time=tick - last))
            last = tick
        track.append(mido.MetaMessage("end_of_track", time=0))
        midi.tracks.append(track)
    return midi
