"""Where GDL Studio keeps its files, and the settings that persist between runs."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gdl_studio.core.atomic import atomic_write_text

APP_NAME = "gdl-studio"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Paths:
    """The folders GDL Studio writes to.

    ``GDL_STUDIO_HOME`` puts them all under one folder (tests, portable installs); otherwise
    they follow the platform's conventions through platformdirs.
    """

    config: Path
    data: Path
    cache: Path

    @property
    def settings_file(self) -> Path:
        return self.config / "settings.json"

    @property
    def history(self) -> Path:
        return self.data / "history"

    @property
    def user_plugins(self) -> Path:
        return self.data / "plugins"

    @property
    def soundfonts(self) -> Path:
        return self.data / "soundfonts"

    @property
    def reports(self) -> Path:
        """Where ``gdl-studio eval`` writes what is meant to be looked at (contact sheets)."""
        return self.data / "reports"

    @classmethod
    def default(cls) -> Paths:
        home = os.environ.get("GDL_STUDIO_HOME")
        if home:
            root = Path(home)
            return cls(root / "config", root / "data", root / "cache")
        import platformdirs  # imported here: only needed when no override is set

        return cls(
            platformdirs.user_config_path(APP_NAME),
            platformdirs.user_data_path(APP_NAME),
            platformdirs.user_cache_path(APP_NAME),
        )


# Version of the remembered parameters: the studio before 2 stored, on every switch of
# plugin, the panel of the plugin just left as the new plugin's own (a text plugin's length in
# characters became the music plugin's length in bars).  Such stores are dropped on load.
PARAMS_VERSION = 2

_DEFAULTS: dict[str, Any] = {
    "disabled_plugins": [],
    "last_params": {},
    "params_version": PARAMS_VERSION,
    "last_model": {},
    "last_plugin": None,
    "soundfont": None,
    "window": {},
}


class Settings:
    """A small JSON settings store, written atomically on every change.

    A corrupt file is moved aside as ``settings.json.bad`` (so nothing is silently lost) and the
    defaults are used.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data: dict[str, Any] = json.loads(json.dumps(_DEFAULTS))
        self.load_error: str | None = None
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
                if not isinstance(loaded, dict):
                    raise ValueError("settings must be a JSON object")
                if loaded.get("params_version", 1) < PARAMS_VERSION:
                    # Remembered parameters from before the fix above may be another
                    # plugin's: start them from the plugins' defaults.
                    loaded["last_params"] = {}
                    loaded["params_version"] = PARAMS_VERSION
                self._data.update(loaded)
            except (OSError, ValueError) as exc:
                self.load_error = f"settings file was unreadable ({exc}); defaults used"
                log.warning("%s: %s", self.path, self.load_error)
                with contextlib.suppress(OSError):
                    os.replace(self.path, self.path.with_suffix(".json.bad"))

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self._data.get(key, default)

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._save()

    def disabled_plugins(self) -> set[str]:
        return set(self.get("disabled_plugins", []))

    def set_plugin_disabled(self, plugin_id: str, disabled: bool) -> None:
        ids = self.disabled_plugins()
        ids = ids | {plugin_id} if disabled else ids - {plugin_id}
        self.put("disabled_plugins", sorted(ids))

    def last_params(self, plugin_id: str) -> dict[str, Any]:
        return dict(self.get("last_params", {}).get(plugin_id, {}))

    def set_last_params(self, plugin_id: str, params: dict[str, Any]) -> None:
        with self._lock:
            self._data.setdefault("last_params", {})[plugin_id] = dict(params)
            self._save()

    def _save(self) -> None:
        atomic_write_text(self.path, json.dumps(self._data, indent=2, sort_keys=True))
