"""Atomic writes under injected failures, and settings that survive corruption."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from gdl_studio.core import atomic
from gdl_studio.core.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from gdl_studio.core.config import Paths, Settings
from gdl_studio.core.results import Provenance, Result, read_provenance, save_result

OLD = b"old contents \x00\x01\x02" * 100
NEW = b"new contents " * 1000


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_atomic_write_replaces(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f.bin"
    assert atomic_write_bytes(path, OLD) == path  # creates the folder too
    atomic_write_bytes(path, NEW)
    assert path.read_bytes() == NEW
    atomic_write_text(path, "héllo")
    assert path.read_bytes() == "héllo".encode()
    assert leftovers(path.parent, {"f.bin"}) == []


def test_enospc_mid_write_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(OLD)
    seen_tmp: list[str] = []

    def half_then_full_disk(fh) -> None:
        seen_tmp.append(fh.name)
        fh.write(NEW[: len(NEW) // 2])
        fh.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        atomic_write(path, half_then_full_disk)
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == OLD
    assert leftovers(tmp_path, {"f.bin"}) == []
    assert seen_tmp  # the writer really ran against a temporary file


def test_exception_in_writer_leaves_no_new_file(tmp_path: Path) -> None:
    path = tmp_path / "never.bin"

    def boom(fh) -> None:
        fh.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, boom)
    assert list(tmp_path.iterdir()) == []


def test_replace_failure_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(OLD)
    calls: list[tuple[str, str]] = []

    def failing_replace(src, dst) -> None:
        calls.append((str(src), str(dst)))
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError, match=r"cross-device"):
        atomic_write_bytes(path, NEW)
    monkeypatch.undo()
    assert len(calls) == 1 and calls[0][1] == str(path)
    assert Path(calls[0][0]).parent == tmp_path
    assert path.read_bytes() == OLD
    assert leftovers(tmp_path, {"f.bin"}) == []


def test_fsync_failure_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(OLD)

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        atomic_write_bytes(path, NEW)
    monkeypatch.undo()
    assert path.read_bytes() == OLD
    assert leftovers(tmp_path, {"f.bin"}) == []


class HalfWriter:
    """A file whose writes stop halfway with ENOSPC."""

    def __init__(self, fh) -> None:
        self._fh = fh

    def write(self, data: bytes) -> int:
        self._fh.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name: str):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._fh.close()


def test_save_result_under_full_disk_keeps_old_png(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = Provenance(
        plugin="tinygen", plugin_version="1", model=None, model_sha256=None,
        params={"seed": 1}, seed=1, provider="CPU", kind="image", app_version="0",
        ort_version="0",
    )  # fmt: skip
    path = tmp_path / "img.png"
    save_result(Result.image([Image.new("RGB", (8, 8), "red")]), p, path)
    old = path.read_bytes()

    real_fdopen = os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    p2 = Provenance(**{**p.__dict__, "seed": 2, "params": {"seed": 2}})
    with pytest.raises(OSError) as info:
        save_result(Result.image([Image.new("RGB", (8, 8), "blue")]), p2, path)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == old
    assert read_provenance(path).seed == 1
    assert leftovers(tmp_path, {"img.png"}) == []


def test_settings_persist(studio_home: Path) -> None:
    paths = Paths.default()
    assert paths.config == studio_home / "config"
    s = Settings(paths.settings_file)
    assert s.load_error is None
    assert s.disabled_plugins() == set()
    assert s.get("last_plugin") is None
    s.put("last_plugin", "tinygen")
    s.set_plugin_disabled("broken", True)
    s.set_plugin_disabled("echo", True)
    s.set_plugin_disabled("echo", False)
    s.set_last_params("tinygen", {"steps": 4, "seed": 9})

    again = Settings(paths.settings_file)
    assert again.get("last_plugin") == "tinygen"
    assert again.disabled_plugins() == {"broken"}
    assert again.last_params("tinygen") == {"steps": 4, "seed": 9}
    assert again.last_params("other") == {}
    assert again.get("window") == {}  # defaults still there
    assert json.loads(paths.settings_file.read_text())["disabled_plugins"] == ["broken"]
    assert leftovers(paths.config, {"settings.json"}) == []


@pytest.mark.parametrize(
    "content", [b'{"last_plugin": "tiny', b"[1, 2, 3]", b"\xff\xfe\x00garbage", b""]
)
def test_corrupt_settings_moved_aside(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "settings.json"
    path.write_bytes(content)
    s = Settings(path)
    assert s.load_error is not None and "defaults used" in s.load_error
    bad = tmp_path / "settings.json.bad"
    assert bad.read_bytes() == content
    assert not path.exists()
    assert s.get("disabled_plugins") == [] and s.get("last_plugin") is None
    s.put("last_plugin", "echo")
    assert Settings(path).get("last_plugin") == "echo"
    assert bad.read_bytes() == content  # the bad copy is kept


def test_settings_defaults_are_not_shared(tmp_path: Path) -> None:
    a = Settings(tmp_path / "a.json")
    a.set_last_params("x", {"n": 1})
    b = Settings(tmp_path / "b.json")
    assert b.last_params("x") == {}
    assert b.get("last_params") == {}


def test_parameters_remembered_before_version_2_are_dropped(tmp_path: Path) -> None:
    # Studios before params_version 2 stored the panel of the plugin just left as the next
    # plugin's own: such parameters are dropped on load; everything else is kept.
    path = tmp_path / "settings.json"
    old = {"last_plugin": "music", "last_params": {"music": {"length": 400}}, "soundfont": "x"}
    path.write_text(json.dumps(old))
    s = Settings(path)
    assert s.load_error is None
    assert s.last_params("music") == {}
    assert s.get("last_plugin") == "music" and s.get("soundfont") == "x"
    s.set_last_params("music", {"length": 8})
    assert Settings(path).last_params("music") == {"length": 8}  # new ones are kept
