"""Where an ONNX file says its weights are, checked before ONNX Runtime opens it.

A tensor may keep its data in another file (``external_data``, location relative to the
model).  A model from outside could name ``/home/you/.ssh/id_rsa`` or ``../../secret`` there,
and older ONNX Runtime releases read such files as weights.  The app supports
``onnxruntime>=1.18``, so it does not rely on the newer releases' own check: this walk over the
protobuf bytes (no ``onnx`` package needed) finds every location and refuses any that is
absolute, climbs out of the model's folder (directly or through a symbolic link) or is missing.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath

# The messages that can hold a tensor, and for each: field number -> message it holds
# (onnx.proto; checked against onnx's descriptors in tests/reliability/test_models.py).
_MODEL, _GRAPH, _NODE, _ATTR, _TENSOR, _SPARSE, _FUNCTION, _TRAINING, _ENTRY = range(9)
_CHILDREN: dict[int, dict[int, int]] = {
    _MODEL: {7: _GRAPH, 20: _TRAINING, 25: _FUNCTION},
    _TRAINING: {1: _GRAPH, 2: _GRAPH},
    _GRAPH: {1: _NODE, 5: _TENSOR, 15: _SPARSE},
    _NODE: {5: _ATTR},
    _ATTR: {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 22: _SPARSE, 23: _SPARSE},
    _FUNCTION: {7: _NODE, 11: _ATTR},
    _SPARSE: {1: _TENSOR, 2: _TENSOR},
    _TENSOR: {13: _ENTRY},
    _ENTRY: {},
}


def check_external_data(model: Path) -> None:
    """Raise ``ValueError`` if ``model`` is not a readable protobuf or names external data
    outside its own folder."""
    model = Path(model)
    folder = model.parent.resolve()
    for location in external_locations(model):
        if not location:
            raise ValueError("a tensor's external data has an empty location")
        windows = PureWindowsPath(location)  # splits on both / and \
        if PurePosixPath(location).is_absolute() or windows.drive or windows.root:
            raise ValueError(f"external data location {location!r} is an absolute path: refused")
        if ".." in windows.parts:
            raise ValueError(f"external data location {location!r} leaves the model's folder")
        target = (folder / location).resolve()
        if not target.is_relative_to(folder):
            raise ValueError(
                f"external data location {location!r} links outside the model's folder"
            )
        if not target.is_file():
            raise ValueError(f"external data file {location!r} is missing")


def external_locations(model: Path) -> list[str]:
    """Every ``location`` of external data named anywhere in the model (subgraphs included)."""
    with open(model, "rb") as fh:
        if fh.seek(0, 2) == 0:
            raise ValueError("the file is empty")
        # Mapped, not read: weights are skipped by their length without being copied.
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return list(_locations(buf))


def _locations(buf: mmap.mmap) -> Iterator[str]:
    stack = [(_MODEL, 0, len(buf))]  # a stack, not recursion: nesting depth is the file's choice
    while stack:
        kind, start, end = stack.pop()
        entry: dict[int, bytes] = {}
        for field, lo, hi in _fields(buf, start, end):
            child = _CHILDREN[kind].get(field)
            if child is not None:
                stack.append((child, lo, hi))
            elif kind == _ENTRY and field in (1, 2):
                entry[field] = buf[lo:hi]
        if kind == _ENTRY and entry.get(1) == b"location":
            yield entry.get(2, b"").decode("utf-8", "replace")


def _fields(buf: mmap.mmap, pos: int, end: int) -> Iterator[tuple[int, int, int]]:
    """The length-delimited fields of one message as (field number, start, end)."""
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(buf, pos, end)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length <= end:
                yield field, pos, pos + length
            pos += length
        else:
            raise ValueError("not an ONNX model (unexpected protobuf wire type)")
        if pos > end:
            raise ValueError("not an ONNX model (truncated or corrupt protobuf)")


def _varint(buf: mmap.mmap, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while pos < end and shift < 64:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise ValueError("not an ONNX model (truncated or corrupt protobuf)")
