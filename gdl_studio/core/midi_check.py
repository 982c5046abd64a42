"""A walk over a Standard MIDI File's bytes before mido parses it, bounding time and memory.

mido believes what a file says.  A variable-length number is built up byte by byte with no
limit on its length, which is quadratic: 100 kB of continuation bytes take seconds to read and
a few MB take hours.  And 15 MB of three-byte events become five million message objects, more
than a gigabyte.  This walk consumes the bytes exactly as mido's reader does (so the numbers it
checks are the ones mido will read), refuses what the MIDI specification does not allow, and
counts events before a single message object exists.  It raises ``ValueError`` naming the first
problem.
"""

from __future__ import annotations

import struct

MAX_EVENTS = 500_000  # room for midi_notes.MAX_NOTES notes (on + off) and their controllers
MAX_VARINT_BYTES = 4  # the specification's limit: deltas and lengths up to 0x0FFFFFFF
HEADER = b"MThd"
TRACK = b"MTrk"


def check_midi_bytes(data: bytes, max_events: int = MAX_EVENTS) -> None:
    """Raise ``ValueError`` unless ``data`` is a MIDI file that mido can read in bounded work."""
    from mido.messages.specs import SPEC_BY_STATUS

    if len(data) < 14 or data[:4] != HEADER:
        raise ValueError("MThd not found: not a MIDI file")
    (header_size,) = struct.unpack(">L", data[4:8])
    if header_size < 6:
        raise ValueError(f"the header is {header_size} bytes, at least 6 are needed")
    if header_size > len(data) - 8:
        raise ValueError(f"the header claims {header_size:,} bytes but the file has {len(data):,}")
    fmt, tracks, division = struct.unpack(">hhh", data[8:14])
    if fmt not in (0, 1, 2):
        raise ValueError(f"unknown MIDI format {fmt}")
    if division <= 0:
        raise ValueError("only files timed in ticks per beat are supported (not SMPTE)")
    pos = 8 + header_size
    events = 0
    for index in range(1, tracks + 1):
        if pos + 8 > len(data):
            raise ValueError(
                f"the header lists {tracks} tracks, the file ends before track {index}"
            )
        name, size = struct.unpack(">4sL", data[pos : pos + 8])
        if name != TRACK:
            raise ValueError(f"track {index} does not start with MTrk")
        start = pos + 8
        end = start + size
        if end > len(data):
            raise ValueError(
                f"track {index} claims {size:,} bytes but only {len(data) - start:,} remain "
                "(truncated, or a wrong track length)"
            )
        events = _walk_track(data, start, end, index, events, max_events, SPEC_BY_STATUS)
        pos = end


def _walk_track(
    data: bytes, pos: int, end: int, index: int, events: int, max_events: int, specs: dict
) -> int:
    """Step over one track's events as mido's ``read_track`` does; return the event count."""
    last_status: int | None = None
    while pos != end:
        if pos > end:
            raise ValueError(f"an event runs past the end of track {index} (wrong track length?)")
        events += 1
        if events > max_events:
            raise ValueError(f"more than {max_events:,} events")
        _, pos = _varint(data, pos, end, index)
        status, pos = _byte(data, pos, end, index)
        peeked = 0
        if status < 0x80:
            if last_status is None:
                raise ValueError(f"track {index}: running status without a status byte")
            status, peeked = last_status, 1
        elif status != 0xFF:
            last_status = status  # as in mido: meta events do not set the running status
        if status == 0xFF:
            _, pos = _byte(data, pos, end, index)
            length, pos = _varint(data, pos, end, index)
            pos += length
        elif status in (0xF0, 0xF7):
            length, pos = _varint(data, pos, end, index)
            pos += length
        else:
            spec = specs.get(status)
            if spec is None:
                raise ValueError(f"track {index}: undefined status byte 0x{status:02x}")
            pos += max(0, spec["length"] - 1 - peeked)
    return events


def _byte(data: bytes, pos: int, end: int, index: int) -> tuple[int, int]:
    if pos >= end:
        raise ValueError(f"track {index} ends in the middle of an event (wrong track length?)")
    return data[pos], pos + 1


def _varint(data: bytes, pos: int, end: int, index: int) -> tuple[int, int]:
    value = 0
    for _ in range(MAX_VARINT_BYTES):
        byte, pos = _byte(data, pos, end, index)
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos
    raise ValueError(
        f"track {index}: a variable-length number longer than {MAX_VARINT_BYTES} bytes"
    )
