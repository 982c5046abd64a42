"""Plugin discovery: folders, entry points, failures kept per plugin, disabled and safe mode."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from gdl_studio.core import discovery
from gdl_studio.core.config import Paths
from gdl_studio.core.discovery import USER_PACKAGE, PluginLoadError, discover
from gdl_studio.core.host import Studio, prepare_job, run_job
from tests.fixtures.plugins import (
    IMAGE_COMPUTE,
    TEXT_COMPUTE,
    TEXT_MANIFEST,
    image_manifest,
    tiny_generator_onnx,
    write_plugin,
)


def states(studio: Studio) -> dict[str, str]:
    return {r.id: r.state for r in studio.registry}


def test_fixture_plugins_states(studio: Studio) -> None:
    st = states(studio)
    assert set(st) == {"tinygen", "echo", "scale", "broken", "badmanifest", "offplugin"}
    assert st["tinygen"] == st["echo"] == st["scale"] == "ok"
    assert st["broken"] == "ok"  # its import error is only known once it is loaded
    assert st["badmanifest"].startswith("bad manifest")
    assert "name must be str" in st["badmanifest"] or "is required" in st["badmanifest"]
    assert st["offplugin"] == "disabled"
    usable = {r.id for r in studio.registry.usable()}
    assert usable == {"tinygen", "echo", "scale", "broken"}
    rec = studio.registry.get("tinygen")
    assert rec.source == "folder"
    assert rec.package.startswith(f"{USER_PACKAGE}.tinygen_")
    assert rec.manifest is not None and rec.manifest.version == "1.2.3"
    assert rec.has("eval") and rec.has("bench") and not rec.has("widgets")


def test_registry_lookup_and_order(studio: Studio) -> None:
    names = [r.name.lower() for r in studio.registry]
    assert names == sorted(names)
    with pytest.raises(KeyError, match=r"no plugin 'nope'.*tinygen"):
        studio.registry.get("nope")


def test_broken_fails_on_load_and_others_still_run(studio: Studio, plugin_root: Path) -> None:
    broken = studio.registry.get("broken")
    with pytest.raises(PluginLoadError, match=r"a_module_that_does_not_exist"):
        broken.load("run")
    assert broken.state.startswith("import failed: ModuleNotFoundError")
    assert "a_module_that_does_not_exist" in broken.state
    assert not broken.ok
    assert broken not in studio.registry.usable()
    # The failure is kept: a second load still raises (nothing half-imported is cached).
    with pytest.raises(PluginLoadError):
        broken.load("run")

    outcome = run_job(prepare_job(studio, "tinygen", params={"seed": 3}))
    assert outcome.result.kind == "image"
    assert outcome.result.images[0].size == (8, 8)
    assert studio.registry.get("tinygen").state == "ok"
    text = run_job(prepare_job(studio, "echo", params={"repeat": 2}))
    assert text.result.text == "hello hello "
    assert not (plugin_root / "offplugin-was-imported").exists()


def test_disabled_plugin_is_never_imported(studio: Studio, plugin_root: Path) -> None:
    marker = plugin_root / "offplugin-was-imported"
    off = studio.registry.get("offplugin")
    assert off.state == "disabled" and not off.ok
    assert not marker.exists()
    for pid in ("tinygen", "echo", "scale"):
        run_job(prepare_job(studio, pid))
    assert not marker.exists()
    with pytest.raises(PluginLoadError, match=r"disabled"):
        off.load("run")
    assert not marker.exists()
    assert off.package not in sys.modules
    assert f"{off.package}.compute" not in sys.modules


def test_discovery_imports_no_plugin_code(plugin_root: Path) -> None:
    registry = discover(None, (), include_builtin=False, include_entry_points=False,
                        extra_folders=[plugin_root])  # fmt: skip
    assert len(registry) == 6
    assert not any(n.startswith(USER_PACKAGE + ".") for n in sys.modules)
    assert not (plugin_root / "offplugin-was-imported").exists()


def test_missing_model_file_is_listed(tmp_path: Path) -> None:
    root = tmp_path / "more"
    d = write_plugin(root, "nomodel", image_manifest("0" * 64, pid="nomodel"), {})
    assert not (d / "model.onnx").exists()
    registry = discover(None, include_builtin=False, include_entry_points=False,
                        extra_folders=[root])  # fmt: skip
    rec = registry.get("nomodel")
    assert rec.manifest is not None
    assert rec.state.startswith("model file missing")
    assert "model.onnx" in rec.state and "'tiny'" in rec.state
    assert not rec.ok


def test_duplicate_ids_are_reported(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_plugin(a, "echo", TEXT_MANIFEST, {"compute.py": TEXT_COMPUTE})
    write_plugin(b, "echo2", TEXT_MANIFEST, {"compute.py": TEXT_COMPUTE})
    registry = discover(None, include_builtin=False, include_entry_points=False,
                        extra_folders=[a, b])  # fmt: skip
    records = [r for r in registry if r.id == "echo"]
    assert len(records) == 2 and len(registry) == 2
    first = registry.get("echo")
    assert first.folder == a / "echo" and first.ok
    dup = next(r for r in records if r is not first)
    assert dup.state.startswith("duplicate plugin id 'echo'")
    assert str(a / "echo") in dup.state
    assert not dup.ok


def test_same_folder_name_in_two_roots_loads_each_own_code(tmp_path: Path) -> None:
    """Two plugins with different ids that happen to live in folders of the same name (say a
    user plugin and a --plugin-dir one) must each run their own code."""
    a, b = tmp_path / "a", tmp_path / "b"
    for root, pid in ((a, "first"), (b, "second")):
        write_plugin(
            root,
            "gen",
            TEXT_MANIFEST.replace('id = "echo"', f'id = "{pid}"'),
            {"compute.py": f"def run(params, ctx, state):\n    return {pid!r}\n"},
        )
    registry = discover(None, include_builtin=False, include_entry_points=False,
                        extra_folders=[a, b])  # fmt: skip
    first = registry.get("first").load("run")
    second = registry.get("second").load("run")
    assert first(None, None, None) == "first"
    assert second(None, None, None) == "second"


def test_user_folder_is_scanned(studio_home: Path) -> None:
    paths = Paths.default()
    write_plugin(paths.user_plugins, "echo", TEXT_MANIFEST, {"compute.py": TEXT_COMPUTE})
    studio = Studio.create(paths, include_builtin=False, include_entry_points=False)
    rec = studio.registry.get("echo")
    assert rec.source == "user" and rec.ok
    assert run_job(prepare_job(studio, "echo", params={"repeat": 1})).result.text == "hello "


def test_safe_mode_lists_nothing(plugin_root: Path, studio_home: Path) -> None:
    paths = Paths.default()
    write_plugin(paths.user_plugins, "echo", TEXT_MANIFEST, {"compute.py": TEXT_COMPUTE})
    studio = Studio.create(paths, safe_mode=True, extra_folders=[plugin_root])
    assert len(studio.registry) == 0
    assert list(studio.registry) == []
    normal = Studio.create(paths, include_builtin=False, include_entry_points=False,
                           extra_folders=[plugin_root])  # fmt: skip
    assert len(normal.registry) == 7


@pytest.fixture
def entry_point_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A pip-style plugin package on sys.path, registered through a fake entry point; its
    ``__init__`` leaves a marker when it runs.  The model lives in its ``assets/`` folder."""
    package = "gdl_test_ep_plugin"
    site = tmp_path / "site"
    marker = tmp_path / "ep-init-ran"
    d = write_plugin(
        site,
        package,
        "",
        {
            "__init__.py": f"open({str(marker)!r}, 'w').close()\n",
            "compute.py": IMAGE_COMPUTE,
        },
    )
    sha = tiny_generator_onnx(d / "assets" / "model.onnx")
    (d / "plugin.toml").write_text(image_manifest(sha, pid="epgen", name="EP generator"))
    monkeypatch.syspath_prepend(str(site))
    calls = []

    def fake_entry_points(group: str):
        calls.append(group)
        return [
            EntryPoint(name="epgen", value=package, group=group),
            EntryPoint(name="ghost", value="gdl_test_no_such_package:x", group=group),
        ]

    monkeypatch.setattr(discovery, "entry_points", fake_entry_points)
    yield package, marker, d, calls
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]


def test_entry_point_plugin_found_without_import(entry_point_package, studio_home) -> None:
    package, marker, folder, calls = entry_point_package
    studio = Studio.create(Paths.default(), include_builtin=False)
    assert calls == [discovery.ENTRY_POINT_GROUP]
    rec = studio.registry.get("epgen")
    assert rec.source == "entry-point"
    assert rec.package == package
    assert rec.folder == folder
    assert rec.state == "ok"  # the model was found in the package's assets folder
    assert package not in sys.modules
    assert not marker.exists()

    ghost = studio.registry.get("ghost")
    assert ghost.source == "entry-point"
    assert "gdl_test_no_such_package" in ghost.state and "not found" in ghost.state
    assert not ghost.ok

    # Loading it then imports the real package, and it runs with the model from assets/.
    outcome = run_job(prepare_job(studio, "epgen", params={"seed": 1, "steps": 1}))
    assert marker.exists()
    assert package in sys.modules
    assert outcome.result.images[0].size == (8, 8)


def test_entry_points_skipped_when_excluded(entry_point_package, studio_home) -> None:
    _, _, _, calls = entry_point_package
    studio = Studio.create(Paths.default(), include_builtin=False, include_entry_points=False)
    assert calls == []
    assert len(studio.registry) == 0


def test_rediscover_applies_settings_and_keeps_safe_mode(plugin_root: Path) -> None:
    paths = Paths.default()
    studio = Studio.create(paths, include_builtin=False, include_entry_points=False,
                           extra_folders=[plugin_root])  # fmt: skip
    assert studio.registry.get("echo").state == "ok"
    studio.settings.set_plugin_disabled("echo", True)
    studio.rediscover()
    assert studio.registry.get("echo").state == "disabled"
    assert studio.registry.get("tinygen").state == "ok"
    safe = Studio.create(paths, safe_mode=True, extra_folders=[plugin_root])
    safe.rediscover()
    assert len(safe.registry) == 0


def test_a_model_file_inside_an_installed_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    (site / "netpkg" / "models").mkdir(parents=True)
    (site / "netpkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(site))
    root = tmp_path / "more"
    manifest = image_manifest("0" * 64, pid="inpkg").replace(
        'file = "model.onnx"', 'file = "models/model.onnx"\npackage = "netpkg"'
    )
    assert 'package = "netpkg"' in manifest
    write_plugin(root, "inpkg", manifest, {})
    missing = manifest.replace('"netpkg"', '"no_such_netpkg"').replace('"inpkg"', '"nopkg"')
    write_plugin(root, "nopkg", missing, {})
    tiny_generator_onnx(site / "netpkg" / "models" / "model.onnx")
    registry = discover(None, include_builtin=False, include_entry_points=False,
                        extra_folders=[root])  # fmt: skip
    found = registry.get("inpkg")
    assert found.ok, found.state
    graph = found.manifest.models[0].graphs["default"]
    assert found.graph_file(graph) == site / "netpkg" / "models" / "model.onnx"
    lost = registry.get("nopkg")
    assert not lost.ok and "of package no_such_netpkg" in lost.state
