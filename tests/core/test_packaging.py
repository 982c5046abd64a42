"""Packaging rules: every built-in plugin folder is installed, and the core never imports Qt or
torch."""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN_PACKAGE = "gdl_studio_plugins"
FORBIDDEN = ("PySide6", "torch", "superqt", "gdl_studio.qt")


def plugin_folders(root: Path) -> list[str]:
    """The sub-folders of ``root`` that hold a ``plugin.toml``."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "plugin.toml").is_file())


def missing_plugin_packages(folders: Iterable[str], packages: Iterable[str]) -> list[str]:
    """The ``gdl_studio_plugins.<name>`` packages that pyproject does not list."""
    listed = set(packages)
    return [
        f"{PLUGIN_PACKAGE}.{name}"
        for name in sorted(folders)
        if f"{PLUGIN_PACKAGE}.{name}" not in listed
    ]


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_plugin_folder_is_packaged() -> None:
    setuptools = pyproject()["tool"]["setuptools"]
    packages = setuptools["packages"]
    assert PLUGIN_PACKAGE in packages
    assert setuptools["package-dir"][PLUGIN_PACKAGE] == "plugins"
    missing = missing_plugin_packages(plugin_folders(REPO / "plugins"), packages)
    assert missing == [], f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_missing_plugin_package_is_detected(tmp_path: Path) -> None:
    root = tmp_path / "plugins"
    for name in ("alpha", "beta", "gamma"):
        (root / name).mkdir(parents=True)
    (root / "alpha" / "plugin.toml").write_text("")
    (root / "beta" / "plugin.toml").write_text("")
    # gamma has no manifest: not a plugin; a loose file is not a folder.
    (root / "notes.toml").write_text("")
    assert plugin_folders(root) == ["alpha", "beta"]
    packages = ["gdl_studio", PLUGIN_PACKAGE, f"{PLUGIN_PACKAGE}.alpha"]
    assert missing_plugin_packages(plugin_folders(root), packages) == [f"{PLUGIN_PACKAGE}.beta"]
    assert missing_plugin_packages(["alpha"], packages) == []
    assert plugin_folders(tmp_path / "absent") == []


def imported_modules(source: str) -> set[str]:
    """Every module an ``import`` statement in ``source`` names (anywhere, even in functions)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def forbidden_imports(source: str) -> list[str]:
    return sorted(
        m
        for m in imported_modules(source)
        if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)
    )


def core_sources() -> list[Path]:
    files = sorted((REPO / "gdl_studio" / "core").glob("*.py"))
    return [*files, REPO / "gdl_studio" / "cli.py"]


@pytest.mark.parametrize("path", core_sources(), ids=lambda p: p.name)
def test_core_never_imports_qt_or_torch(path: Path) -> None:
    assert forbidden_imports(path.read_text(encoding="utf-8")) == []


def test_import_scan_finds_hidden_imports() -> None:
    source = (
        "import os\n"
        "def later():\n"
        "    import torch.nn as nn\n"
        "    from PySide6.QtWidgets import QWidget\n"
        "    from gdl_studio.qt import main_window\n"
        "from gdl_studio.core import jobs\n"
        "import PySide6_not_really\n"
    )
    assert forbidden_imports(source) == [
        "PySide6.QtWidgets",
        "PySide6.QtWidgets.QWidget",
        "gdl_studio.qt",
        "gdl_studio.qt.main_window",
        "torch.nn",
    ]


def test_core_sources_are_found() -> None:
    names = {p.name for p in core_sources()}
    assert {"runtime.py", "host.py", "manifest.py", "cli.py"} <= names
