"""The bridge between a job running in a thread and the window: Qt signals, throttled previews.

One job runs at a time per window; starting a new one cancels the old one (as in Orange).
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal

from gdl_studio.core.errors import StudioError
from gdl_studio.core.history import History, HistoryEntry
from gdl_studio.core.host import Job, JobOutcome, run_job
from gdl_studio.core.jobs import Cancelled, TaskState
from gdl_studio.core.results import Preview


@dataclass
class Finished:
    """What the window gets when a job ends well: the outcome and where history keeps it."""

    outcome: JobOutcome
    entry: HistoryEntry | None
    save_error: str | None = None


class JobRunner(QObject):
    """Runs :func:`run_job` in a daemon thread and reports through signals (queued to the UI).

    How a job ended reaches the runner's own thread (the window's) first, which then emits
    ``finished``, ``failed`` or ``cancelled`` and ``running_changed(False)``: whether the job
    was replaced by a newer one is decided there, in order with ``start``.  Decided in the job's
    thread, a job that ended just before a new one started would still be shown, and say "not
    running" while the new one runs."""

    progress = Signal(float, str)
    preview = Signal(object)  # Preview, coalesced: at most one pending at a time
    notice = Signal(str)
    finished = Signal(object)  # Finished
    failed = Signal(str)
    cancelled = Signal()
    running_changed = Signal(bool)
    # The job thread's report of its end (generation, which public signal, its arguments),
    # queued to the runner's own thread by Qt's automatic connection.
    _ended = Signal(int, str, object)

    def __init__(self, history: History, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._history = history
        self._state: TaskState | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending: Preview | None = None
        self._pending_signalled = False
        self._generation = 0
        self._ended.connect(self._on_ended)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, job: Job) -> None:
        self.cancel()
        self._generation += 1
        generation = self._generation
        state = TaskState(
            on_progress=lambda f, m: self._emit(generation, self.progress, f, m),
            on_preview=lambda p: self._queue_preview(generation, p),
            on_notice=lambda m: self._emit(generation, self.notice, m),
        )
        self._state = state
        self._thread = threading.Thread(
            target=self._work, args=(job, state, generation), name="gdl-job", daemon=True
        )
        self.running_changed.emit(True)
        self._thread.start()

    def cancel(self) -> None:
        if self._state is not None:
            self._state.cancel()

    def wait(self, timeout: float = 5.0) -> bool:
        """Block until the job thread ends (used on close and in tests)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def _work(self, job: Job, state: TaskState, generation: int) -> None:
        try:
            outcome = run_job(job, state)
        except Cancelled:
            self._ended.emit(generation, "cancelled", ())
            return
        except (Exception, SystemExit) as exc:  # report anything, keep the app alive
            if isinstance(exc, StudioError):  # its message is already written for the user
                detail = str(exc)
            else:
                detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self._ended.emit(generation, "failed", (f"{job.context.record.name}: {detail}",))
            return
        entry, save_error = None, None
        try:
            # Saved before it is shown: a crash after this point loses nothing.
            entry = self._history.add(outcome.result, outcome.provenance)
        except Exception as exc:
            # A full disk (OSError), but also a result the file format cannot hold (mido and
            # Pillow raise ValueError): either way the window must hear that the job ended, or
            # it would wait for it for ever.
            save_error = f"The result could not be saved to the history: {exc}"
        self._ended.emit(generation, "finished", (Finished(outcome, entry, save_error),))

    def _emit(self, generation: int, signal: Any, *args: Any) -> None:
        if generation == self._generation:
            signal.emit(*args)

    def _on_ended(self, generation: int, name: str, args: tuple[Any, ...]) -> None:
        if generation != self._generation:
            return  # a job that was replaced by a newer one reports nothing
        self.take_preview()
        getattr(self, name).emit(*args)
        self.running_changed.emit(False)

    def _queue_preview(self, generation: int, preview: Any) -> None:
        if generation != self._generation:
            return
        with self._lock:
            old = self._pending
            if isinstance(preview, Preview) and preview.kind == "text" and old is not None:
                # Text previews are chunks to append: merge them instead of dropping any.
                probs = None
                if old.probs is not None and preview.probs is not None:
                    probs = old.probs + preview.probs
                preview = Preview("text", text=old.text + preview.text, probs=probs)
            self._pending = preview
            if self._pending_signalled:
                return
            self._pending_signalled = True
        self.preview.emit(None)

    def take_preview(self) -> Preview | None:
        """The newest preview (merged, for text) since the last call; called by the window."""
        with self._lock:
            out, self._pending = self._pending, None
            self._pending_signalled = False
            return out
