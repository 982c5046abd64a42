"""Find plugins: the built-in folder, the user's plugin folder and the entry-point group.

Manifests are read without importing plugin code; code is imported on first use, and a plugin
that fails (bad manifest, import error, missing model file) is kept with its error while the
others go on working.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from gdl_studio.core.errors import StudioError
from gdl_studio.core.manifest import (
    MANIFEST_NAME,
    GraphSpec,
    Manifest,
    ManifestError,
    load_manifest,
)

ENTRY_POINT_GROUP = "gdl_studio.plugins"
USER_PACKAGE = "gdl_user_plugins"  # synthetic parent package for folder-installed plugins
log = logging.getLogger(__name__)


class PluginLoadError(StudioError):
    """A plugin's code could not be imported or its command is missing."""


@dataclass
class PluginRecord:
    """A discovered plugin: where it lives, its manifest (if it parsed) and its state."""

    folder: Path
    source: str  # "builtin", "user", "entry-point" or "folder"
    package: str  # import name of the plugin's package
    manifest: Manifest | None = None
    error: str | None = None
    disabled: bool = False
    assets_dir: Path | None = None
    _loaded: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        return self.manifest.id if self.manifest else self.folder.name

    @property
    def name(self) -> str:
        return self.manifest.name if self.manifest else self.folder.name

    @property
    def state(self) -> str:
        """ "ok", "disabled" or the error text."""
        if self.disabled:
            return "disabled"
        return self.error or "ok"

    @property
    def ok(self) -> bool:
        return not self.disabled and self.error is None and self.manifest is not None

    def has(self, command: str) -> bool:
        return self.manifest is not None and command in self.manifest.entry

    def load(self, command: str = "run") -> Any:
        """Import and return the object behind ``entry.<command>`` (cached).

        An import failure marks the plugin as failed (shown in the Plugins dialog) and raises
        :class:`PluginLoadError`; other plugins are unaffected.
        """
        if command in self._loaded:
            return self._loaded[command]
        if self.disabled:
            raise PluginLoadError(f"plugin {self.id!r} is disabled")
        if self.manifest is None:
            raise PluginLoadError(f"plugin {self.id!r} has no valid manifest: {self.error}")
        target = self.manifest.entry.get(command)
        if target is None:
            raise PluginLoadError(f"plugin {self.id!r} has no {command!r} command")
        module_name, attr = target.split(":")
        try:
            _ensure_package(self)
            module = importlib.import_module(f"{self.package}.{module_name}")
            obj = getattr(module, attr)
        except (Exception, SystemExit) as exc:
            # Any failure in third-party code must not take the host down; a module that calls
            # sys.exit() while being imported is a failure too, not a reason to quit the studio.
            self.error = f"import failed: {type(exc).__name__}: {exc}"
            log.warning("plugin %s: %s", self.id, self.error)
            raise PluginLoadError(f"plugin {self.id!r}: {self.error}") from exc
        self._loaded[command] = obj
        return obj

    def graph_file(self, graph: GraphSpec) -> Path:
        """Where a graph's file is: in its installed package (``package``), else as any asset."""
        if not graph.package:
            return self.asset_path(graph.file)
        spec = importlib.util.find_spec(graph.package.split(".")[0])
        if spec is None or not spec.submodule_search_locations:
            # A path that names the problem: "model file missing/not found: <this>".
            return Path(f"<package {graph.package} is not installed>") / graph.file
        root = Path(next(iter(spec.submodule_search_locations)))
        return root.joinpath(*graph.package.split(".")[1:], graph.file)

    def asset_path(self, relative: str) -> Path:
        """Resolve a model/card path: beside the plugin first, then in the assets folder."""
        local = self.folder / relative
        if local.exists() or self.assets_dir is None:
            return local
        return self.assets_dir / relative


def _ensure_package(record: PluginRecord) -> None:
    """Make a folder-installed plugin importable as ``gdl_user_plugins.<folder>``."""
    if record.package in sys.modules or not record.package.startswith(USER_PACKAGE + "."):
        return
    if USER_PACKAGE not in sys.modules:
        parent = importlib.util.module_from_spec(
            importlib.machinery.ModuleSpec(USER_PACKAGE, None, is_package=True)
        )
        parent.__path__ = []
        sys.modules[USER_PACKAGE] = parent
    init = record.folder / "__init__.py"
    spec: importlib.machinery.ModuleSpec | None
    if init.exists():
        spec = importlib.util.spec_from_file_location(
            record.package, init, submodule_search_locations=[str(record.folder)]
        )
    else:  # a plain folder: a package with no code of its own
        spec = importlib.machinery.ModuleSpec(record.package, None, is_package=True)
        spec.submodule_search_locations = [str(record.folder)]
    if spec is None:
        raise PluginLoadError(f"cannot import {record.folder}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[record.package] = module
    if spec.loader is not None:
        spec.loader.exec_module(module)


def builtin_folder() -> Path | None:
    """The built-in ``plugins/`` folder (installed as ``gdl_studio_plugins``), found unimported."""
    spec = importlib.util.find_spec("gdl_studio_plugins")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def assets_folder() -> Path | None:
    """The shipped ``assets/`` folder (installed as ``gdl_studio_assets``)."""
    spec = importlib.util.find_spec("gdl_studio_assets")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


class PluginRegistry:
    """All plugins known to this run of the studio, keyed by id."""

    def __init__(self, records: Iterable[PluginRecord] = ()) -> None:
        self._records: dict[str, PluginRecord] = {}
        for rec in records:
            self.add(rec)

    def add(self, rec: PluginRecord) -> None:
        if rec.id in self._records:
            other = self._records[rec.id]
            rec.error = rec.error or f"duplicate plugin id {rec.id!r} (also at {other.folder})"
            self._records[f"{rec.id}@{rec.folder}"] = rec
            return
        self._records[rec.id] = rec

    def __iter__(self) -> Any:
        return iter(sorted(self._records.values(), key=lambda r: (r.name.lower(), r.id)))

    def __len__(self) -> int:
        return len(self._records)

    def get(self, plugin_id: str) -> PluginRecord:
        try:
            return self._records[plugin_id]
        except KeyError:
            known = ", ".join(r.id for r in self) or "none"
            raise KeyError(f"no plugin {plugin_id!r} (plugins: {known})") from None

    def usable(self) -> list[PluginRecord]:
        return [r for r in self if r.ok]


def read_folder(
    folder: Path, source: str, package: str, assets_dir: Path | None = None
) -> PluginRecord:
    """Read one plugin folder's manifest into a record (never raises)."""
    rec = PluginRecord(folder=folder, source=source, package=package, assets_dir=assets_dir)
    try:
        rec.manifest = load_manifest(folder / MANIFEST_NAME)
    except ManifestError as exc:
        rec.error = f"bad manifest: {exc}"
        return rec
    rec.error = _missing_model_files(rec)
    return rec


def _missing_model_files(rec: PluginRecord) -> str | None:
    # Only a cheap existence check here: hashes are verified before a model's first load.
    assert rec.manifest is not None
    for model in rec.manifest.models:
        for graph in model.graphs.values():
            if not rec.graph_file(graph).is_file():
                where = f" of package {graph.package}" if graph.package else ""
                return f"model file missing: {graph.file}{where} (model {model.id!r})"
    return None


def _package_name(prefix: str, folder: Path) -> str:
    """Built-ins import as ``gdl_studio_plugins.<folder>``; folder plugins get a suffix from
    their path, so two roots holding a same-named folder never share a module."""
    if prefix != USER_PACKAGE:
        return f"{prefix}.{folder.name}"
    digest = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:8]
    safe = "".join(c if c.isalnum() else "_" for c in folder.name)
    return f"{prefix}.{safe}_{digest}"


def scan_folder(
    root: Path, source: str, package_prefix: str, assets_dir: Path | None = None
) -> list[PluginRecord]:
    """Every sub-folder of ``root`` that holds a ``plugin.toml``."""
    if not root.is_dir():
        return []
    out = []
    for sub in sorted(root.iterdir()):
        if sub.is_dir() and (sub / MANIFEST_NAME).is_file():
            plugin_assets = assets_dir / sub.name if assets_dir else None
            out.append(read_folder(sub, source, _package_name(package_prefix, sub), plugin_assets))
    return out


def scan_entry_points(group: str = ENTRY_POINT_GROUP) -> list[PluginRecord]:
    """Plugins installed with pip that register ``name = "package"`` in the entry-point group."""
    out = []
    for ep in entry_points(group=group):
        package = ep.value.split(":")[0]
        try:
            # find_spec on a top-level name locates the package without running its code.
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError) as exc:
            spec, err = None, str(exc)
        else:
            err = "package not found"
        if spec is None or not spec.submodule_search_locations:
            rec = PluginRecord(Path(ep.name), "entry-point", package, error=f"{package}: {err}")
            out.append(rec)
            continue
        folder = Path(next(iter(spec.submodule_search_locations)))
        out.append(read_folder(folder, "entry-point", package, folder / "assets"))
    return out


def discover(
    user_folder: Path | None = None,
    disabled: Iterable[str] = (),
    *,
    include_builtin: bool = True,
    include_entry_points: bool = True,
    extra_folders: Iterable[Path] = (),
) -> PluginRegistry:
    """Build the registry from every source; disabled plugins are listed but never imported."""
    records: list[PluginRecord] = []
    if include_builtin and (folder := builtin_folder()) is not None:
        assets = assets_folder()
        records += scan_folder(folder, "builtin", "gdl_studio_plugins", assets)
    if include_entry_points:
        records += scan_entry_points()
    if user_folder is not None:
        records += scan_folder(user_folder, "user", USER_PACKAGE)
    for extra in extra_folders:
        records += scan_folder(Path(extra), "folder", USER_PACKAGE)
    off = set(disabled)
    for rec in records:
        rec.disabled = rec.id in off
    return PluginRegistry(records)
