"""Shared fixtures: every test gets its own GDL Studio home, and sees only fixture plugins."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("GDL_STUDIO_PROVIDERS", "cpu")  # same provider on every machine


@pytest.fixture(autouse=True)
def studio_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh settings/history home per test, so no test touches the user's real files."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("GDL_STUDIO_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def builtin_studio(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The shipped plugins, shared by a module's tests, under a home of their own: a
    module-scoped fixture is set up before the per-test home above, so it must not read the
    environment's (it would be the user's real data folder)."""
    from gdl_studio.core.host import Studio

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GDL_STUDIO_HOME", str(tmp_path_factory.mktemp("module-home")))
        return Studio.create(include_entry_points=False)


@pytest.fixture(autouse=True)
def fresh_plugin_modules():
    """Each test imports its own fixture plugins, never a previous test's copies."""
    from gdl_studio.core.discovery import USER_PACKAGE

    def drop() -> None:
        for name in [n for n in sys.modules if n.split(".")[0] == USER_PACKAGE]:
            del sys.modules[name]

    drop()
    yield
    drop()


@pytest.fixture
def plugin_root(tmp_path: Path) -> Path:
    from tests.fixtures.plugins import make_fixture_plugins

    return make_fixture_plugins(tmp_path / "plugins")


@pytest.fixture
def studio(plugin_root: Path):
    """A Studio that sees only the fixture plugins (real discovery is blocked)."""
    from gdl_studio.core.config import Paths
    from gdl_studio.core.host import Studio

    paths = Paths.default()
    from gdl_studio.core.config import Settings

    Settings(paths.settings_file).set_plugin_disabled("offplugin", True)
    return Studio.create(
        paths,
        include_builtin=False,
        include_entry_points=False,
        extra_folders=[plugin_root],
    )
