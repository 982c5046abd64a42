"""A plugin's own canvas: the optional ``widgets`` entry of its manifest, shown for its results.

The contract (the plugin's Qt layer; the import-linter lets ``<plugin>.widgets`` import Qt):

- ``entry.widgets = "module:Factory"``: ``Factory(parent)`` returns a QWidget; it is created
  once per plugin, on the first result of that plugin the window shows.
- ``widget.show_result(result, provenance, context) -> bool``: take this result (True) or
  leave it to the window's own canvas (False).  ``context`` is the plugin's
  :class:`~gdl_studio.core.host.PluginContext` for the result's model, so the widget can run
  the model's graphs itself (e.g. decode under the cursor).
- Optional signals: ``keep_requested(dict)``, the parameters of a run whose result the window
  keeps in the history, with full provenance, without leaving the widget; and
  ``save_requested()``, to save the shown result as File → Save does.

A widget that fails to load or raises is reported once and its results go to the window's
own canvases: a plugin's Qt layer never takes the window down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QStackedWidget, QWidget

from gdl_studio.core.errors import StudioError
from gdl_studio.core.history import HistoryEntry
from gdl_studio.core.host import Studio, context_for, prepare_job, run_job
from gdl_studio.core.jobs import Cancelled
from gdl_studio.core.results import Provenance, Result

log = logging.getLogger(__name__)


class PluginCanvases:
    """The plugin canvases of one window, kept in its canvas stack."""

    def __init__(
        self,
        studio: Studio,
        stack: QStackedWidget,
        notify: Callable[[str, bool], None],
        kept: Callable[[HistoryEntry], None],
        save: Callable[[], Any],
    ) -> None:
        self.studio = studio
        self.stack = stack
        self._notify = notify
        self._kept = kept
        self._save = save
        self._widgets: dict[str, QWidget] = {}
        self._failed: set[str] = set()
        self._showing: dict[str, Provenance] = {}  # what each widget shows (for keep)

    def widget(self, plugin_id: str) -> QWidget | None:
        """The plugin's canvas, created on first use; None when it has none (or it failed)."""
        if plugin_id in self._widgets:
            return self._widgets[plugin_id]
        if plugin_id in self._failed:
            return None
        try:
            rec = self.studio.registry.get(plugin_id)
        except KeyError:
            return None
        if not rec.ok or not rec.has("widgets"):
            return None
        try:
            factory = rec.load("widgets")
            widget = factory(self.stack)
            if not isinstance(widget, QWidget) or not hasattr(widget, "show_result"):
                raise TypeError("entry.widgets must give a QWidget with show_result()")
        except Exception as exc:  # a plugin's Qt layer: report it, keep the window
            self._failed.add(plugin_id)
            self._notify(f"{rec.name}: its canvas could not be loaded ({exc})", True)
            return None
        if hasattr(widget, "keep_requested"):
            widget.keep_requested.connect(lambda params, p=plugin_id: self.keep(p, params))
        if hasattr(widget, "save_requested"):
            widget.save_requested.connect(lambda: self._save())
        self.stack.addWidget(widget)
        self._widgets[plugin_id] = widget
        return widget

    def show(self, result: Result, prov: Provenance) -> QWidget | None:
        """Give ``result`` to its plugin's canvas; the canvas when it took it, else None."""
        widget = self.widget(prov.plugin)
        if widget is None:
            return None
        try:
            ctx = context_for(self.studio, prov.plugin, prov.model)
            taken = bool(widget.show_result(result, prov, ctx))  # type: ignore[attr-defined]
        except Exception as exc:  # e.g. a model removed since the result was made
            log.info("plugin canvas of %s failed", prov.plugin, exc_info=True)
            self._notify(f"{prov.plugin}: its canvas cannot show this result ({exc})", True)
            return None
        if taken:
            self._showing[prov.plugin] = prov
        return widget if taken else None

    def keep(self, plugin_id: str, params: dict[str, Any]) -> HistoryEntry | None:
        """Run the plugin with the shown result's model and ``params`` (a fast job, such as
        decoding one point) and add its result to the history, as any job's result."""
        prov = self._showing.get(plugin_id)
        try:
            job = prepare_job(self.studio, plugin_id, model_id=prov.model if prov else None,
                              params=params)  # fmt: skip
            outcome = run_job(job)
            entry = self.studio.history.add(outcome.result, outcome.provenance)
        except (StudioError, Cancelled, OSError, ValueError) as exc:
            self._notify(f"Could not keep the image: {exc}", True)
            return None
        self._kept(entry)
        return entry
