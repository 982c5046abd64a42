"""The music tokenizers: MIDI -> tokens -> MIDI round trips on generated chorales and solo
lines, the grammar, voice assignment, and the files that must be refused (no shared data,
no torch)."""

from __future__ import annotations

import io
import math

import mido
import numpy as np
import pytest
from gdl_studio_plugins.music.tokenizers import (
    BOS,
    REST,
    BeatNote,
    ChoraleTokenizer,
    GeneralTokenizer,
    SoloTokenizer,
    TokenError,
    beat_notes,
    melody_grid,
    notes_to_grid,
    tokenizer_from_config,
    write_midi,
)

CHORALE = ChoraleTokenizer()
SOLO = SoloTokenizer()
GENERAL = GeneralTokenizer()


def synthetic_chorale(steps: int, seed: int) -> np.ndarray:
    """A [steps, 4] SATB grid: each voice walks in its range, holding notes for 1-8 steps,
    with the odd rest (NaN) in the inner voices."""
    rng = np.random.default_rng(seed)
    centres = (72, 64, 57, 48)
    grid = np.full((steps, 4), np.nan)
    for v, c in enumerate(centres):
        s, p = 0, c
        while s < steps:
            hold = int(rng.integers(1, 9))
            p = int(np.clip(p + rng.integers(-3, 4), c - 7, c + 7))
            rest = v in (1, 2) and rng.random() < 0.1
            grid[s : s + hold, v] = np.nan if rest else p
            s += hold
    return grid


def same_grid(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


def roundtrip_bytes(midi: mido.MidiFile) -> mido.MidiFile:
    buf = io.BytesIO()
    midi.save(file=buf)
    return mido.MidiFile(file=io.BytesIO(buf.getvalue()))


# ------------------------------------------------------------------------------- chorales


def test_chorale_grid_round_trip_is_exact() -> None:
    for seed in range(5):
        grid = synthetic_chorale(64 + 16 * seed, seed)
        ids = CHORALE.encode_grid(grid)
        assert len(ids) == 4 * len(grid) and CHORALE.grammar_errors(ids) == 0
        assert same_grid(CHORALE.decode_grid(ids), grid)


def test_chorale_midi_tokens_midi_round_trip() -> None:
    grid = synthetic_chorale(96, 7)
    ids = CHORALE.encode_grid(grid)
    midi = roundtrip_bytes(CHORALE.to_midi(ids, tempo_bpm=72, program=19))
    assert [t.name for t in midi.tracks[1:]] == ["Soprano", "Alto", "Tenor", "Bass"]
    programs = {m.program for t in midi.tracks for m in t if m.type == "program_change"}
    assert programs == {19}
    tempo = next(m.tempo for m in midi.tracks[0] if m.type == "set_tempo")
    assert mido.tempo2bpm(tempo) == pytest.approx(72)
    assert CHORALE.encode_midi(midi) == ids  # one channel per voice: voices by channel
    # Notes: a held pitch is one note, a rest is no note.
    notes = CHORALE.decode_notes(ids)
    soprano = [n for n in notes if n.voice == 0]
    changes = 1 + int(np.sum(grid[1:, 0] != grid[:-1, 0]))
    assert len(soprano) == changes
    assert all(n.end > n.start for n in notes)


def test_a_single_track_chorale_is_voiced_by_rank() -> None:
    chord = [BeatNote(p, 0, 1, voice=0) for p in (72, 67, 64, 48)]
    three = [BeatNote(p, 1, 2, voice=0) for p in (71, 62, 50)]
    two = [BeatNote(p, 2, 3, voice=0) for p in (72, 48)]
    grid = notes_to_grid(chord + three + two, 4)
    assert grid[0].tolist() == [72, 67, 64, 48]
    assert grid[4, [0, 1, 3]].tolist() == [71, 62, 50] and math.isnan(grid[4, 2])
    assert grid[8, [0, 3]].tolist() == [72, 48] and np.isnan(grid[8, [1, 2]]).all()


def test_melody_is_the_top_line_on_the_grid() -> None:
    notes = [BeatNote(60, 0, 1), BeatNote(67, 0.5, 1.5), BeatNote(64, 2, 2.25)]
    m = melody_grid(notes, 4)
    assert m[:2].tolist() == [60, 60] and m[2:6].tolist() == [67] * 4
    assert math.isnan(m[6]) and m[8] == 64 and len(m) == 9
    sop = CHORALE.encode_melody(notes)
    assert sop[0] == CHORALE.pitch_id(60) and sop[6] == REST


def test_chorale_grammar_counts_what_does_not_belong() -> None:
    ok = CHORALE.encode_grid(synthetic_chorale(8, 1))
    bad = list(ok)
    bad[0] = BOS  # BOS only starts a piece
    bad[3] = CHORALE.pitch_id(84)  # far above any bass
    bad[5] = 9999  # not a token at all
    bad[6] = -3
    assert CHORALE.grammar_errors(bad) == 4
    grid = CHORALE.decode_grid(bad)  # what the grammar refuses is silence
    assert np.isnan(grid[0, 0]) and np.isnan(grid[0, 3]) and np.isnan(grid[1, 1:3]).all()


def test_pitches_outside_the_range_fold_by_octaves() -> None:
    ids = CHORALE.encode_grid(np.array([[110.0, 70, 60, 12]]))
    assert [CHORALE.id_pitch(i) for i in ids] == [86, 70, 60, 36]


# ---------------------------------------------------------------------------- solo lines


def solo_notes(seed: int) -> list[BeatNote]:
    rng = np.random.default_rng(seed)
    units = (1, 2, 3, 4, 6, 8, 12)  # twelfths of a beat: triplets and 16ths
    t, out = 0, []
    for _ in range(60):
        d = int(rng.choice(units)) * 1
        if rng.random() < 0.15:
            t += d  # a rest
            continue
        out.append(BeatNote(int(rng.integers(40, 70)), t / 12, (t + d) / 12))
        t += d
    return out


def test_solo_round_trip_is_exact_on_the_grid() -> None:
    for seed in range(4):
        notes = solo_notes(seed)
        ids = SOLO.encode_notes(notes)
        assert SOLO.grammar_errors(ids) == 0 and len(ids) % 2 == 0
        back = SOLO.decode_notes(ids)
        assert [(n.pitch, n.start, n.end) for n in back] == [
            (n.pitch, n.start, n.end) for n in notes
        ]
        midi = roundtrip_bytes(SOLO.to_midi(ids, 100, 42))
        assert SOLO.encode_midi(midi) == ids


def test_solo_long_notes_split_and_chords_keep_the_top() -> None:
    ids = SOLO.encode_notes([BeatNote(50, 0, 6), BeatNote(45, 6, 7), BeatNote(57, 6, 6.5)])
    names = [SOLO.vocab[i] for i in ids]
    assert names == ["P50", "D48", "REST", "D24", "P57", "D6"]  # the top note, cut at its end


def test_solo_grammar_is_pitch_then_duration() -> None:
    ids = SOLO.encode_notes(solo_notes(1))
    swapped = [ids[1], ids[0], *ids[2:]]
    assert SOLO.grammar_errors(swapped) == 2
    assert len(SOLO.decode_notes(swapped)) == len(SOLO.decode_notes(ids)) - 1


def test_general_round_trip_keeps_chords_lengths_and_loudness() -> None:
    notes = [
        BeatNote(60, 0.0, 1.0, 0, 100),
        BeatNote(64, 0.0, 0.5, 1, 70),  # a chord: a second instrument at the same time
        BeatNote(67, 0.25, 2.0, 0, 30),
        BeatNote(48, 3.0, 3.25, 2, 127),
    ]
    ids = GENERAL.encode_notes(notes)
    assert len(ids) == 16 and GENERAL.grammar_errors(ids) == 0
    names = [GENERAL.vocab[i] for i in ids]
    assert names[:8] == ["S0", "P64", "L2", "V4", "S0", "P60", "L4", "V6"]  # top note first
    back = GENERAL.decode_notes(ids)
    assert [(n.pitch, n.start, n.end) for n in back] == [
        (64, 0.0, 0.5), (60, 0.0, 1.0), (67, 0.25, 2.0), (48, 3.0, 3.25)
    ]  # fmt: skip
    assert [n.velocity // 16 for n in back] == [70 // 16, 100 // 16, 30 // 16, 127 // 16]
    midi = roundtrip_bytes(GENERAL.to_midi(ids, 96, 0))
    assert GENERAL.encode_midi(midi) == ids
    # Time moves at the start of an event, by its shift; the rest of the cycle does not.
    assert [GENERAL.beats_of(t, k % 4) for k, t in enumerate(ids[8:12])] == [0.25, 0, 0, 0]


def test_general_shortens_long_silences_and_long_notes() -> None:
    ids = GENERAL.encode_notes([BeatNote(60, 0, 1), BeatNote(62, 40, 70)])
    assert [GENERAL.vocab[i] for i in ids[4:7]] == ["S64", "P62", "L64"]  # 16 beats, 16 beats
    assert GENERAL.decode_notes(ids)[1].start == 16.0


def test_random_ids_always_decode_to_a_file_that_reads_back() -> None:
    rng = np.random.default_rng(0)
    for tok in (CHORALE, SOLO, GENERAL):
        for _ in range(20):
            ids = rng.integers(-5, len(tok) + 5, 200).tolist()
            midi = roundtrip_bytes(tok.to_midi(ids, float(rng.uniform(-50, 900)), 300))
            assert midi.length >= 0


def test_tokenizers_rebuild_from_their_card_entry() -> None:
    for tok in (CHORALE, SOLO, GENERAL, ChoraleTokenizer(30, 80)):
        again = tokenizer_from_config(tok.config())
        assert type(again) is type(tok) and again.vocab == tok.vocab
    with pytest.raises(TokenError, match="unusable tokenizer"):
        tokenizer_from_config({"kind": "events"})


# --------------------------------------------------------------------------- refused files


def test_drums_only_and_silent_files_are_refused() -> None:
    drums = write_midi([BeatNote(36, 0, 1, voice=9)], ["Drums"])
    for track in drums.tracks:
        for m in track:
            if m.type in ("note_on", "note_off", "program_change"):
                m.channel = 9
    with pytest.raises(TokenError, match="only drums"):
        beat_notes(drums)
    with pytest.raises(TokenError, match="no notes"):
        beat_notes(write_midi([], ["Solo"]))


def test_tempo_changes_are_followed_into_beats() -> None:
    midi = write_midi([BeatNote(60, 0, 1), BeatNote(62, 4, 5)], ["Solo"], tempo_bpm=60)
    midi.tracks[0].insert(1, mido.MetaMessage("set_tempo", tempo=250_000, time=960))
    notes = beat_notes(roundtrip_bytes(midi))
    assert [(n.start, n.end) for n in notes] == [(0.0, 1.0), (4.0, 5.0)]


def test_general_decoding_gives_notes_one_channel_can_hold() -> None:
    def ev(shift: int, pitch: int, length: int) -> list[int]:
        g = GENERAL
        return [g.first_shift + shift, g.pitch_id(pitch), g.first_length + length - 1,
                g.first_loudness + 5]  # fmt: skip

    # C4 for 4 sixteenths, struck again 2 later; E4 twice at once (8 and 3 long).
    ids = ev(0, 60, 4) + ev(2, 60, 4) + ev(0, 64, 8) + ev(0, 64, 3)
    notes = GENERAL.decode_notes(ids)
    assert [(n.pitch, n.start, n.end) for n in notes] == [
        (60, 0, 0.5),
        (60, 0.5, 1.5),
        (64, 0.5, 2.5),
    ]
    midi = roundtrip_bytes(GENERAL.to_midi(ids))
    back = sorted((n.pitch, n.start, n.end) for n in beat_notes(midi))
    assert back == sorted((n.pitch, n.start, n.end) for n in notes)
