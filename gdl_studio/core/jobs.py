"""The state a running plugin reports to and listens to: progress, previews, notices, cancel."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Cancelled(Exception):
    """Raised inside a plugin's run when the user cancelled it."""


class TaskState:
    """Shared between a plugin's compute loop and whoever runs it (CLI, Qt worker, tests).

    The plugin calls :meth:`progress`, :meth:`preview` and :meth:`notice`, and checks
    :meth:`check` (or :attr:`cancelled`) between steps.  :meth:`cancel` may be called from any
    thread; it also terminates any ONNX Runtime call in flight (through ``RunOptions``).
    """

    def __init__(
        self,
        on_progress: Callable[[float, str], None] | None = None,
        on_preview: Callable[[Any], None] | None = None,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        self._on_progress = on_progress
        self._on_preview = on_preview
        self._on_notice = on_notice
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._run_options: set[Any] = set()
        self.fraction = 0.0
        self.message = ""
        self.notices: list[str] = []

    # -- reported by the plugin -------------------------------------------------------------
    def progress(self, fraction: float, message: str = "") -> None:
        self.fraction = min(1.0, max(0.0, float(fraction)))
        self.message = message
        if self._on_progress:
            self._on_progress(self.fraction, message)

    def preview(self, payload: Any) -> None:
        """Hand a cheap preview (a Preview or Result) to the canvas; ignored when nobody looks."""
        if self._on_preview:
            self._on_preview(payload)

    @property
    def wants_previews(self) -> bool:
        """True when someone shows previews, so a plugin can skip building them otherwise."""
        return self._on_preview is not None

    def notice(self, message: str) -> None:
        """Tell the user something that does not stop the job (e.g. 'fell back to CPU')."""
        self.notices.append(message)
        if self._on_notice:
            self._on_notice(message)

    # -- cancellation -------------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if the user asked to stop."""
        if self._cancel.is_set():
            raise Cancelled()

    def cancel(self) -> None:
        self._cancel.set()
        with self._lock:
            for opts in self._run_options:
                opts.terminate = True

    def register_run(self, run_options: Any) -> None:
        """Track an ONNX Runtime ``RunOptions`` so that :meth:`cancel` can terminate its call."""
        with self._lock:
            self._run_options.add(run_options)
            if self._cancel.is_set():
                run_options.terminate = True

    def unregister_run(self, run_options: Any) -> None:
        with self._lock:
            self._run_options.discard(run_options)
