"""The history folder: written before shown, read back after a restart, junk skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mido
import pytest
from PIL import Image

from gdl_studio.core.history import History
from gdl_studio.core.results import Provenance, Result, read_provenance


def prov(kind: str, plugin: str, seed: int) -> Provenance:
    return Provenance(
        plugin=plugin, plugin_version="1", model=None, model_sha256=None,
        params={"seed": seed}, seed=seed, provider="CPU", kind=kind, app_version="0",
        ort_version="0",
    )  # fmt: skip


def image(seed: int) -> Result:
    return Result.image([Image.new("RGB", (4, 4), (seed, 0, 0))])


def midi() -> Result:
    m = mido.MidiFile()
    t = mido.MidiTrack()
    m.tracks.append(t)
    t.append(mido.Message("note_on", note=60, velocity=64, time=0))
    t.append(mido.Message("note_off", note=60, velocity=0, time=120))
    return Result.of_midi(m)


def test_add_and_entries_in_order(tmp_path: Path) -> None:
    h = History(tmp_path / "history")
    assert h.entries() == []  # no folder yet
    added = [
        h.add(image(1), prov("image", "tinygen", 1)),
        h.add(Result.of_text("hi"), prov("text", "echo", 2)),
        h.add(midi(), prov("midi", "scale", 3)),
        h.add(image(4), prov("image", "tinygen", 4)),
    ]
    entries = h.entries()
    assert [e.path for e in entries] == [e.path for e in added]
    assert [e.provenance.seed for e in entries] == [1, 2, 3, 4]
    assert [e.kind for e in entries] == ["image", "text", "midi", "image"]
    assert entries[1].path.suffix == ".txt"
    assert entries[2].path.suffix == ".mid"
    assert "tinygen" in entries[0].path.name
    # The text sidecar is not listed as an entry of its own.
    assert len(entries) == 4


def test_entry_on_disk_when_add_returns(tmp_path: Path) -> None:
    h = History(tmp_path)
    entry = h.add(image(9), prov("image", "tinygen", 9))
    assert entry.path.is_file()
    assert entry.path.parent == tmp_path
    assert read_provenance(entry.path) == entry.provenance
    with Image.open(entry.path) as im:
        assert im.getpixel((0, 0)) == (9, 0, 0)


def test_entries_survive_restart(tmp_path: Path) -> None:
    h = History(tmp_path)
    for i in range(3):
        h.add(image(i), prov("image", "tinygen", i))
    h.add(Result.of_text("t"), prov("text", "echo", 7))
    restarted = History(tmp_path)
    entries = restarted.entries()
    assert [e.provenance.seed for e in entries] == [0, 1, 2, 7]
    assert entries[-1].provenance.plugin == "echo"


def test_temp_and_junk_files_are_skipped_not_deleted(tmp_path: Path) -> None:
    h = History(tmp_path)
    good = h.add(image(1), prov("image", "tinygen", 1))
    # What a crash in the middle of a save leaves, and files the studio did not write.
    tmp = tmp_path / f".{good.path.name}.x1y2.tmp"
    tmp.write_bytes(good.path.read_bytes()[:20])
    hidden = tmp_path / ".hidden.png"
    hidden.write_bytes(good.path.read_bytes())
    junk = tmp_path / "00000000-junk.png"
    junk.write_bytes(b"this is not a png")
    plain = tmp_path / "00000001-plain.png"
    Image.new("RGB", (2, 2)).save(plain)
    notes = tmp_path / "00000002-notes.txt"
    notes.write_text("no sidecar")
    later = h.add(image(2), prov("image", "tinygen", 2))

    entries = h.entries()
    assert [e.path for e in entries] == [good.path, later.path]
    for p in (tmp, hidden, junk, plain, notes):
        assert p.exists()


def test_truncated_midi_in_history_is_skipped(tmp_path: Path) -> None:
    """A damaged .mid (e.g. copied in, or cut off by a full disk elsewhere) is skipped like any
    other unreadable file instead of breaking the whole history."""
    h = History(tmp_path)
    good = h.add(midi(), prov("midi", "scale", 1))
    data = good.path.read_bytes()
    (tmp_path / "00000000-cut.mid").write_bytes(data[: len(data) - 5])
    (tmp_path / "00000001-garbage.mid").write_bytes(b"garbage garbage garbage")
    assert [e.path for e in h.entries()] == [good.path]


def test_limit_takes_the_newest(tmp_path: Path) -> None:
    h = History(tmp_path)
    for i in range(5):
        h.add(image(i), prov("image", "tinygen", i))
    assert [e.provenance.seed for e in h.entries(limit=2)] == [3, 4]
    assert [e.provenance.seed for e in h.entries(limit=10)] == [0, 1, 2, 3, 4]


def test_limit_zero_gives_nothing(tmp_path: Path) -> None:
    h = History(tmp_path)
    for i in range(3):
        h.add(image(i), prov("image", "tinygen", i))
    assert h.entries(limit=0) == []  # "the last 0", not everything (files[-0:] is all)


def test_remove_deletes_file_and_sidecar(tmp_path: Path) -> None:
    h = History(tmp_path)
    keep = h.add(image(1), prov("image", "tinygen", 1))
    text = h.add(Result.of_text("bye"), prov("text", "echo", 2))
    sidecar = text.path.with_name(text.path.name + ".json")
    assert sidecar.is_file()
    h.remove(text)
    assert not text.path.exists() and not sidecar.exists()
    assert [e.path for e in h.entries()] == [keep.path]
    h.remove(text)  # removing twice is harmless


def test_trash_moves_the_result_then_its_sidecar(tmp_path: Path) -> None:
    h = History(tmp_path / "history")
    keep = h.add(image(1), prov("image", "tinygen", 1))
    text = h.add(Result.of_text("bye"), prov("text", "echo", 2))
    moved: list[str] = []
    h.trash(text, mover=lambda p: moved.append(p) or Path(p).unlink())
    assert moved == [str(text.path), str(text.path) + ".json"]  # the result first
    assert [e.path for e in h.entries()] == [keep.path]


def test_trash_that_fails_moves_nothing_and_says_so(tmp_path: Path) -> None:
    h = History(tmp_path)
    entry = h.add(image(1), prov("image", "tinygen", 1))

    def refuse(path: str) -> None:
        raise PermissionError(f"no trash can for {path}")

    with pytest.raises(OSError):
        h.trash(entry, mover=refuse)
    assert [e.path for e in h.entries()] == [entry.path]


@pytest.mark.skipif(sys.platform != "linux", reason="the freedesktop.org trash")
def test_trash_uses_the_system_trash(tmp_path: Path) -> None:
    # The real Send2Trash, in a process of its own whose XDG_DATA_HOME is a temporary folder
    # (it reads it when imported): the user's own trash is never touched.
    h = History(tmp_path / "history")
    text = h.add(Result.of_text("bye"), prov("text", "echo", 2))
    code = (
        "import sys; from pathlib import Path; from gdl_studio.core.history import History, "
        "HistoryEntry; from gdl_studio.core.results import read_provenance; "
        "p = Path(sys.argv[1]); History(p.parent).trash(HistoryEntry(p, read_provenance(p)))"
    )
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    subprocess.run([sys.executable, "-c", code, str(text.path)], env=env, check=True)
    assert h.entries() == []
    trashed = tmp_path / "xdg" / "Trash" / "files"
    assert sorted(p.name for p in trashed.iterdir()) == [text.path.name, text.path.name + ".json"]
    assert (trashed / text.path.name).read_text(encoding="utf-8") == "bye"
