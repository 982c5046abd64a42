"""Hostile MIDI files: each is refused with one clear line, or clipped into range, within a time
and memory bound.  The parser runs in a child process with an address-space and CPU limit, so
a file that made it allocate gigabytes or loop for minutes fails the test instead of the run."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import mido
import pytest

from gdl_studio.core.history import History
from gdl_studio.core.imageio import InputError, open_midi
from gdl_studio.core.midi_check import MAX_EVENTS
from gdl_studio.core.midi_notes import notes_from_midi
from gdl_studio.core.results import read_provenance
from tests.reliability.conftest import describe, run_child

NOTE = b"\x00\x90\x3c\x40" + b"\x60\x80\x3c\x00"  # a C, struck and released
END = b"\x00\xff\x2f\x00"


def header(fmt: int = 0, tracks: int = 1, division: int = 480, size: int = 6) -> bytes:
    return b"MThd" + struct.pack(">L", size) + struct.pack(">hHh", fmt, tracks, division)


def track(events: bytes, claimed: int | None = None) -> bytes:
    return b"MTrk" + struct.pack(">L", len(events) if claimed is None else claimed) + events


def good() -> bytes:
    return header() + track(NOTE + END)


# name -> (file bytes, expected: "ok" or a fragment of the refusal)
CASES: dict[str, tuple[bytes, str]] = {
    "valid.mid": (good(), "ok"),
    "data-bytes-over-127.mid": (header() + track(b"\x00\x90\xbc\xff\x60\x80\x3c\x00" + END), "ok"),
    "drum-only.mid": (header() + track(b"\x00\x99\x24\x64\x30\x89\x24\x00" + END), "ok"),
    "zero-bytes.mid": (b"", "the file is empty"),
    "no-tracks.mid": (header(tracks=0), "has no notes"),
    "meta-only.mid": (header() + track(b"\x00\xff\x03\x04name" + END), "has no notes"),
    "not-midi.mid": (b"RIFF" + b"\0" * 60, "MThd not found"),
    "header-claims-gigabytes.mid": (header(size=0xFFFFFFF0) + track(NOTE + END), "header claims"),
    "header-lists-30000-tracks.mid": (header(fmt=1, tracks=30_000) + track(NOTE + END),
                                      "ends before track 2"),
    "track-longer-than-file.mid": (header() + track(NOTE + END, claimed=10_000_000),
                                   "claims 10,000,000 bytes"),
    "track-length-too-short.mid": (header(fmt=1, tracks=2) + track(NOTE + END, claimed=6)
                                   + track(NOTE + END), "past the end of track 1"),
    "track-length-too-long.mid": (header(fmt=1, tracks=2) + track(NOTE + END, claimed=14)
                                  + track(NOTE + END), "past the end of track 1"),
    "truncated-in-event.mid": (good()[:-6], "claims"),
    "huge-variable-length-delta.mid": (header() + track(b"\xff" * 1_000_000 + b"\x00" + NOTE + END),
                                       "variable-length number longer than 4 bytes"),
    "huge-meta-length.mid": (header() + track(b"\x00\xff\x01\xff\xff\xff\x7f" + END),
                             "past the end of track 1"),
    "sysex-past-track-end.mid": (header() + track(b"\x00\xf0\x83\x00\x01\x02" + END),
                                 "past the end of track 1"),
    "running-status-without-status.mid": (header() + track(b"\x00\x3c\x40" + END),
                                          "running status without a status byte"),
    "undefined-status.mid": (header() + track(b"\x00\xf4" + END), "undefined status byte 0xf4"),
    "smpte-division.mid": (header(division=-(25 << 8 | 40)) + track(NOTE + END), "SMPTE"),
    "zero-division.mid": (header(division=0) + track(NOTE + END), "SMPTE"),
    "format-7.mid": (header(fmt=7) + track(NOTE + END), "unknown MIDI format 7"),
    # 600,000 three-byte events in 1.8 MB: mido alone would build ~0.2 GB of message objects.
    "event-flood.mid": (header() + track(b"\x00\x90\x3c\x40" + b"\x00\x3c\x40" * 600_000 + END),
                        f"more than {MAX_EVENTS:,} events"),
}  # fmt: skip


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every case through open_midi (what a plugin's input gets) and read_provenance (what a
    dropped file or the history gets), in one child limited to 700 MB and 60 s of CPU."""
    folder = tmp_path_factory.mktemp("midi")
    for name, (data, _) in CASES.items():
        (folder / name).write_bytes(data)
    proc = run_child(
        f"""
        import json, time
        from pathlib import Path
        from gdl_studio.core.imageio import InputError, open_midi
        from gdl_studio.core.results import read_provenance
        out = {{}}
        for path in sorted(Path({str(folder)!r}).iterdir()):
            # CPU time, not wall time: the bound is on the work a file can cause, and a busy
            # machine (CI beside a training run) must not make a correct reader fail.
            t = time.process_time()
            try:
                midi = open_midi(path)
                result = "ok"
                velocities = [m.velocity for tr in midi.tracks for m in tr if m.type == "note_on"]
                channels = sorted({{m.channel for tr in midi.tracks for m in tr
                                    if m.type == "note_on"}})
            except InputError as exc:
                result, velocities, channels = str(exc), [], []
            first = time.process_time() - t
            try:
                read_provenance(path)
                dropped = "provenance?"
            except ValueError as exc:  # InputError is a ValueError: callers catch that
                dropped = type(exc).__name__
            out[path.name] = dict(result=result, seconds=max(first, time.process_time() - t),
                                  velocities=velocities, channels=channels, dropped=dropped)
            print(json.dumps({{path.name: out[path.name]}}), flush=True)
        print("RESULT", json.dumps(out))
        """,
        memory_mb=700,
        cpu_s=60,
        timeout=120,
    )
    assert proc.returncode == 0, describe(proc)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_midi_refused_or_clipped_in_bounded_time(
    outcomes: dict[str, dict], name: str
) -> None:
    expected = CASES[name][1]
    got = outcomes[name]
    assert got["seconds"] < 3.0, f"{name} took {got['seconds']:.2f} s of CPU"
    if expected == "ok":
        assert got["result"] == "ok", got
    else:
        assert got["result"] != "ok", f"{name} was accepted"
        assert got["result"].startswith(name + ": "), got["result"]
        assert any(part in got["result"] for part in expected.split("|")), got["result"]
        assert "\n" not in got["result"]
    assert got["dropped"] in ("ValueError", "InputError"), got  # no provenance: refused, no crash


def test_data_bytes_above_127_are_clipped(outcomes: dict[str, dict]) -> None:
    assert outcomes["data-bytes-over-127.mid"]["velocities"][0] == 127


def test_drum_only_file_is_accepted_on_channel_ten(
    outcomes: dict[str, dict], tmp_path: Path
) -> None:
    assert outcomes["drum-only.mid"]["channels"] == [9]
    path = tmp_path / "drums.mid"
    path.write_bytes(CASES["drum-only.mid"][0])
    notes = notes_from_midi(open_midi(path))
    assert [(n.pitch, n.channel) for n in notes] == [(0x24, 9)]


def test_longest_legal_delta_is_read_and_then_refused_as_too_long(tmp_path: Path) -> None:
    """A 4-byte delta (0x0FFFFFFF ticks, about 77 hours) is legal MIDI: the parser accepts it,
    and the note list refuses a file that long instead of drawing it."""
    path = tmp_path / "long.mid"
    path.write_bytes(header() + track(b"\xff\xff\xff\x7f\x90\x3c\x40" + b"\x00\x80\x3c\x00" + END))
    midi = open_midi(path)
    with pytest.raises(ValueError, match=r"longer than the 120 minutes"):
        notes_from_midi(midi)


def test_every_truncation_of_a_real_file_is_refused(tmp_path: Path) -> None:
    midi = mido.MidiFile(type=1)
    for channel in (0, 9):
        tr = mido.MidiTrack()
        midi.tracks.append(tr)
        for pitch in range(40, 52):
            tr.append(mido.Message("note_on", channel=channel, note=pitch, velocity=90, time=0))
            tr.append(mido.Message("note_off", channel=channel, note=pitch, time=120))
    path = tmp_path / "song.mid"
    midi.save(path)
    data = path.read_bytes()
    cut = tmp_path / "cut.mid"
    for n in range(1, len(data)):
        cut.write_bytes(data[:n])
        with pytest.raises(InputError, match=r"^cut.mid: "):
            open_midi(cut)
    assert len(notes_from_midi(open_midi(path))) == 24


def test_hostile_midi_in_the_history_folder_is_skipped(tmp_path: Path) -> None:
    history = History(tmp_path / "history")
    history.folder.mkdir()
    for name in (
        "huge-variable-length-delta.mid",
        "header-claims-gigabytes.mid",
        "event-flood.mid",
    ):
        (history.folder / f"20260101-000000-{name}").write_bytes(CASES[name][0])
    assert history.entries() == []  # skipped, quickly, and never deleted
    assert len(list(history.folder.iterdir())) == 3
    with pytest.raises(InputError):
        read_provenance(history.folder / "20260101-000000-event-flood.mid")
