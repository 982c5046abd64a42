"""Supply: assets/SHA256SUMS matches what ships, a shipped file with one changed byte is refused
when the studio starts, and the minimum versions that carry known fixes stay pinned."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from gdl_studio.cli import main as cli_main
from gdl_studio.core import discovery
from gdl_studio.core.config import Paths
from gdl_studio.core.host import JobError, Studio, prepare_job
from gdl_studio.core.runtime import ModelIntegrityError
from gdl_studio.core.supply import SUMS_NAME, compute_sums, format_sums, parse_sums
from tests.fixtures.plugins import IMAGE_COMPUTE, image_manifest, tiny_generator_onnx
from tests.reliability.conftest import ASSETS, ROOT

SHIPPED = sorted(parse_sums((ASSETS / SUMS_NAME).read_text(encoding="utf-8")))


# -- the manifest matches the files ---------------------------------------------------------------
def test_sha256sums_lists_every_shipped_file_with_its_hash() -> None:
    listed = parse_sums((ASSETS / SUMS_NAME).read_text(encoding="utf-8"))
    actual = compute_sums(ASSETS)
    assert sorted(set(actual) - set(listed)) == [], "shipped but not listed in SHA256SUMS"
    assert sorted(set(listed) - set(actual)) == [], "listed in SHA256SUMS but not shipped"
    changed = sorted(rel for rel in listed if listed[rel] != actual[rel])
    assert changed == [], "changed since SHA256SUMS was written: run scripts/update_sha256sums.py"
    assert any(rel.endswith(".onnx") for rel in listed), "no shipped model is listed"


def test_update_script_check_passes() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "update_sha256sums.py"), "--check"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "up to date" in proc.stdout


def test_update_script_check_fails_on_a_stale_manifest(tmp_path: Path) -> None:
    """The check above can fail: a copy of assets/ with one more file is reported out of date."""
    copy = copy_assets(tmp_path)
    (copy / "new-card.md").write_text("added after SHA256SUMS was written\n")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "update_sha256sums.py"), "--check",
         "--assets", str(copy)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 1 and "out of date" in proc.stdout, proc.stdout + proc.stderr


# -- a tampered byte is refused at start-up -------------------------------------------------------
def copy_assets(tmp_path: Path) -> Path:
    copy = tmp_path / "assets"
    shutil.copytree(ASSETS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def builtins_from(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Point the studio at a given assets folder and built-in plugins folder (by default an
    empty one, so that the plugins other work adds to plugins/ do not matter here)."""

    def use(assets: Path, plugins: Path | None = None) -> None:
        if plugins is None:
            plugins = tmp_path / "no-builtin-plugins"
            plugins.mkdir(exist_ok=True)
        monkeypatch.setattr(discovery, "assets_folder", lambda: assets)
        monkeypatch.setattr(discovery, "builtin_folder", lambda: plugins)

    return use


def start(**kw) -> Studio:
    return Studio.create(Paths.default(), include_entry_points=False, **kw)


def test_untouched_copy_of_the_assets_is_accepted(tmp_path: Path, builtins_from) -> None:
    builtins_from(copy_assets(tmp_path))
    studio = start()
    assert studio.assets.refused == {}
    assert studio.assets.notes == []


@pytest.mark.parametrize("rel", SHIPPED)
def test_tampered_shipped_file_is_refused_at_start_up(
    tmp_path: Path, builtins_from, capsys: pytest.CaptureFixture[str], rel: str
) -> None:
    copy = copy_assets(tmp_path)
    target = copy / rel
    flip_byte(target)
    builtins_from(copy)
    studio = start()
    assert list(studio.assets.refused) == [target.resolve()]
    reason = studio.assets.refused[target.resolve()]
    assert f"assets/{rel} differs from assets/{SUMS_NAME}" in reason
    assert studio.factory.refusal(target) == reason
    if target.suffix == ".onnx":  # the session factory will not load it, whatever asks
        with pytest.raises(ModelIntegrityError, match="differs from assets/SHA256SUMS"):
            studio.factory.session(target)
    # The CLI says so on every start, in one line per refused file.
    assert cli_main(["plugins"]) == 0
    err = capsys.readouterr().err
    assert f"gdl-studio: warning: assets/{rel} differs" in err


def test_safe_mode_skips_the_check(tmp_path: Path, builtins_from) -> None:
    """Safe mode loads no plugins and so reads no asset: nothing to check or refuse."""
    copy = copy_assets(tmp_path)
    flip_byte(copy / SHIPPED[0])
    builtins_from(copy)
    assert start(safe_mode=True).assets.refused == {}


def plugin_with_shipped_assets(tmp_path: Path) -> tuple[Path, Path]:
    """A built-in plugin whose model and vocabulary live in assets/<plugin>/, listed in the
    assets folder's SHA256SUMS (the layout the shipped plugins use)."""
    assets = copy_assets(tmp_path)
    sha = tiny_generator_onnx(assets / "tinygen" / "model.onnx")
    (assets / "tinygen" / "vocab.json").write_text('{"a": 0}\n')
    (assets / SUMS_NAME).write_text(format_sums(compute_sums(assets)))
    plugins = tmp_path / "plugins"
    (plugins / "tinygen").mkdir(parents=True)
    (plugins / "tinygen" / "plugin.toml").write_text(image_manifest(sha))
    (plugins / "tinygen" / "compute.py").write_text(IMAGE_COMPUTE)
    return assets, plugins


def test_plugin_over_intact_shipped_assets_is_usable(tmp_path: Path, builtins_from) -> None:
    assets, plugins = plugin_with_shipped_assets(tmp_path)
    builtins_from(assets, plugins)
    studio = start()
    assert studio.assets.refused == {} and studio.assets.notes == []
    rec = studio.registry.get("tinygen")
    assert rec.ok, rec.state
    session = prepare_job(studio, "tinygen").context.session()
    assert session.path == (assets / "tinygen" / "model.onnx").resolve()


@pytest.mark.parametrize("tampered", ["model.onnx", "vocab.json"])
def test_plugin_over_a_tampered_shipped_file_is_unusable(
    tmp_path: Path, builtins_from, tampered: str
) -> None:
    """A changed model, but also a changed file the manifest pins no hash for (a vocabulary
    the plugin's code reads itself): the plugin is listed as unusable with the reason."""
    assets, plugins = plugin_with_shipped_assets(tmp_path)
    flip_byte(assets / "tinygen" / tampered)
    builtins_from(assets, plugins)
    studio = start()
    assert list(studio.assets.refused) == [(assets / "tinygen" / tampered).resolve()]
    rec = studio.registry.get("tinygen")
    assert not rec.ok and f"assets/tinygen/{tampered} differs" in rec.state
    with pytest.raises(JobError, match=f"not usable: assets/tinygen/{tampered} differs"):
        prepare_job(studio, "tinygen")


def test_window_shows_each_refused_file(qtbot, tmp_path: Path, builtins_from) -> None:
    from gdl_studio.qt.main_window import MainWindow

    copy = copy_assets(tmp_path)
    flip_byte(copy / SHIPPED[0])
    builtins_from(copy)
    win = MainWindow(start())
    qtbot.addWidget(win)
    texts = [win.messages.item(i).text() for i in range(win.messages.count())]
    assert any(t.startswith("⚠ ") and f"assets/{SHIPPED[0]} differs" in t for t in texts), texts


# -- pinned minimum versions ----------------------------------------------------------------------
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# (where in pyproject.toml, distribution, the first version with the fix)
PINS = [
    ("dependencies", "pillow", "12.3"),
    ("train", "onnx", "1.21"),
    ("train", "torch", "2.6"),
    ("test", "onnx", "1.21"),
]


def requirement(where: str, dist: str) -> Requirement:
    project = PYPROJECT["project"]
    reqs = project["dependencies"] if where == "dependencies" else (
        project["optional-dependencies"][where])  # fmt: skip
    found = [Requirement(r) for r in reqs if Requirement(r).name.lower() == dist]
    assert found, f"{dist} is not listed in {where}"
    return found[0]


@pytest.mark.parametrize(("where", "dist", "fixed"), PINS)
def test_minimum_version_with_the_fix_is_pinned(where: str, dist: str, fixed: str) -> None:
    spec = requirement(where, dist).specifier
    major, minor = Version(fixed).release[:2]
    older = Version(f"{major}.{minor - 1}.99")  # the last release without the fix, at most
    assert not spec.contains(older, prereleases=True), f"{dist}{spec} allows {older}"
    assert spec.contains(fixed), f"{dist}{spec} refuses {fixed} itself"


@pytest.mark.parametrize(("where", "dist", "fixed"), PINS)
def test_installed_version_has_the_fix(where: str, dist: str, fixed: str) -> None:
    try:
        installed = version(dist)
    except PackageNotFoundError:
        pytest.skip(f"{dist} is not installed here")
    assert Version(installed) >= Version(fixed), f"{dist} {installed} predates {fixed}"
