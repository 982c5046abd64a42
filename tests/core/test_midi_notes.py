"""Notes and durations read from MIDI files, in seconds."""

from __future__ import annotations

import mido
import pytest

from gdl_studio.core.midi_notes import (
    Note,
    grid_lines,
    midi_duration,
    notes_from_midi,
    notes_to_midi,
)


def _file(*messages: mido.Message | mido.MetaMessage, tpb: int = 480) -> mido.MidiFile:
    midi = mido.MidiFile(type=0, ticks_per_beat=tpb)
    midi.tracks.append(mido.MidiTrack(messages))
    return midi


def test_note_times_follow_a_tempo_change() -> None:
    midi = _file(
        mido.MetaMessage("set_tempo", tempo=500_000, time=0),  # 120 bpm: a beat is 0.5 s
        mido.Message("program_change", channel=2, program=40, time=0),
        mido.Message("note_on", channel=2, note=60, velocity=90, time=0),
        mido.Message("note_off", channel=2, note=60, time=480),  # 0.5 s
        mido.MetaMessage("set_tempo", tempo=1_000_000, time=0),  # 60 bpm: a beat is 1 s
        mido.Message("note_on", channel=2, note=62, velocity=70, time=480),  # 1.5 s
        mido.Message("note_on", channel=2, note=62, velocity=0, time=120),  # vel 0 = off: 1.75 s
    )
    assert notes_from_midi(midi) == [
        Note(60, 0.0, 0.5, 90, 2, 40),
        Note(62, 1.5, 1.75, 70, 2, 40),
    ]
    assert midi_duration(midi) == pytest.approx(1.75)


def test_tempo_changes_in_another_track_apply_to_all_tracks() -> None:
    midi = mido.MidiFile(type=1, ticks_per_beat=100)
    midi.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=250_000, time=0)]))
    midi.tracks.append(mido.MidiTrack([
        mido.Message("note_on", note=40, velocity=64, time=200),  # two beats at 0.25 s
        mido.Message("note_off", note=40, time=100),
    ]))  # fmt: skip
    assert notes_from_midi(midi) == [Note(40, 0.5, 0.75, 64, 0, 0)]


def test_overlapping_and_unterminated_notes() -> None:
    midi = _file(
        mido.Message("note_on", note=64, velocity=50, time=0),
        mido.Message("note_on", note=64, velocity=60, time=480),  # same pitch again at 0.5 s
        mido.Message("note_off", note=64, time=480),  # ends the first (1.0 s)
        mido.Message("note_off", note=64, time=480),  # ends the second (1.5 s)
        mido.Message("note_on", note=70, velocity=80, time=0),  # never switched off
        mido.MetaMessage("end_of_track", time=960),  # file ends at 2.5 s
    )
    assert notes_from_midi(midi) == [
        Note(64, 0.0, 1.0, 50, 0, 0),
        Note(64, 0.5, 1.5, 60, 0, 0),
        Note(70, 1.5, 2.5, 80, 0, 0),
    ]


def test_note_cap_raises() -> None:
    msgs = []
    for i in range(4):
        msgs += [mido.Message("note_on", note=60 + i, velocity=64, time=0),
                 mido.Message("note_off", note=60 + i, time=10)]  # fmt: skip
    with pytest.raises(ValueError, match="more than 3 notes"):
        notes_from_midi(_file(*msgs), max_notes=3)
    assert len(notes_from_midi(_file(*msgs), max_notes=4)) == 4


def test_length_cap_raises() -> None:
    # 3 hours of silence at 60 bpm, then a note.
    midi = _file(
        mido.MetaMessage("set_tempo", tempo=1_000_000, time=0),
        mido.Message("note_on", note=60, velocity=64, time=480 * 3 * 3600),
        mido.Message("note_off", note=60, time=480),
    )
    with pytest.raises(ValueError, match="longer than the 120 minutes"):
        notes_from_midi(midi)
    assert midi_duration(midi) == pytest.approx(3 * 3600 + 1)


def test_notes_to_midi_round_trips() -> None:
    notes = [
        Note(60, 0.0, 0.5, 100, 0, 0),
        Note(67, 0.25, 1.0, 80, 1, 33),
        Note(36, 1.0, 1.5, 90, 9, 0),
    ]
    assert notes_from_midi(notes_to_midi(notes)) == sorted(notes, key=lambda n: n.start)


def test_beat_grid_uses_tempo_and_time_signature() -> None:
    midi = _file(
        mido.MetaMessage("time_signature", numerator=3, denominator=4, time=0),
        mido.MetaMessage("set_tempo", tempo=1_000_000, time=0),  # 60 bpm
        mido.Message("note_on", note=60, velocity=64, time=0),
        mido.Message("note_off", note=60, time=480 * 4),
    )
    assert grid_lines(midi, 4.5) == [(0.0, True), (1.0, False), (2.0, False), (3.0, True),
                                     (4.0, False)]  # fmt: skip
    assert grid_lines(None, 2.2) == [(0.0, True), (0.5, False), (1.0, False), (1.5, False),
                                     (2.0, True)]  # fmt: skip


def test_type_2_files_play_their_tracks_one_after_another() -> None:
    midi = mido.MidiFile(type=2, ticks_per_beat=480)
    for pitch in (60, 62):
        midi.tracks.append(mido.MidiTrack([
            mido.Message("note_on", note=pitch, velocity=64, time=0),
            mido.Message("note_off", note=pitch, time=480),
        ]))  # fmt: skip
    assert [(n.pitch, n.start, n.end) for n in notes_from_midi(midi)] == [
        (60, 0.0, 0.5),
        (62, 0.5, 1.0),
    ]
