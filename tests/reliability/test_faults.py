"""Faults while the studio works: a worker that raises, a GPU that runs out of memory, a disk
that fills up while saving, ``kill -9`` right after a result appears, and closing the window
in the middle of a long run.  Nothing made is lost, the user is told, the app stays usable."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QTimer

from gdl_studio.core import atomic, runtime
from gdl_studio.core.config import Paths
from gdl_studio.core.history import History
from gdl_studio.core.host import JobError, Studio, prepare_job, run_job
from gdl_studio.core.results import Provenance, Result, load_result, read_provenance, save_result
from gdl_studio.core.runtime import CPU, CUDA, ModelLoadError, ProviderChoice, SessionFactory
from gdl_studio.qt.main_window import MainWindow
from tests.fixtures.plugins import TEXT_MANIFEST, make_fixture_plugins, write_plugin
from tests.reliability.conftest import LINUX, ROOT

TEXT = TEXT_MANIFEST.replace("default = 3", "default = 1")


def text_plugin(pid: str, code: str) -> tuple[str, dict[str, str]]:
    return TEXT.replace('id = "echo"', f'id = "{pid}"').replace("Echo text", pid), {
        "compute.py": "import time\nfrom gdl_studio.core.results import Result\n" + code
    }


EXTRA_PLUGINS = {
    # Works a little (so the window is seen working), then raises.
    "raiser": text_plugin("raiser", """
def run(params, ctx, state):
    for i in range(5):
        time.sleep(0.05)
        state.progress(i / 5, "working")
    raise RuntimeError("boom in the worker")
"""),
    # A long run that checks for cancel at every step (10 s with repeat = 50).
    "slowpoke": text_plugin("slowpoke", """
from gdl_studio.core.results import Preview

def run(params, ctx, state):
    for i in range(params["repeat"]):
        state.check()
        time.sleep(0.2)
        state.progress((i + 1) / params["repeat"], f"step {i + 1}")
        yield Preview("text", text=".")
    yield Result.of_text("finished")
"""),
    # Ignores cancel and never ends: the worst a plugin can do to a closing window.
    "stubborn": text_plugin("stubborn", """
def run(params, ctx, state):
    state.progress(0.1, "step 1, stuck")
    while True:
        time.sleep(0.05)
"""),
}  # fmt: skip


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = make_fixture_plugins(tmp_path / "plugins")
    for folder, (manifest, files) in EXTRA_PLUGINS.items():
        write_plugin(root, folder, manifest, files)
    return root


def make_studio(root: Path, factory: SessionFactory | None = None) -> Studio:
    return Studio.create(Paths.default(), include_builtin=False, include_entry_points=False,
                         extra_folders=[root], factory=factory)  # fmt: skip


def open_window(qtbot, studio: Studio) -> MainWindow:
    win = MainWindow(studio)
    qtbot.addWidget(win)
    win.show()
    return win


@pytest.fixture
def window(qtbot, root: Path) -> MainWindow:
    return open_window(qtbot, make_studio(root))


def generate(qtbot, win: MainWindow, timeout: int = 20_000) -> None:
    with qtbot.waitSignal(win.runner.running_changed, timeout=timeout,
                          check_params_cb=lambda running: not running):  # fmt: skip
        assert win.generate()


def messages(win: MainWindow) -> list[str]:
    return [win.messages.item(i).text() for i in range(win.messages.count())]


def job_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "gdl-job" and t.is_alive()]


def child_pids() -> list[int]:
    """The live child processes of this process (Linux: /proc/<pid>/task/*/children)."""
    pids: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        with contextlib.suppress(OSError):
            pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


# -- a worker that raises ---------------------------------------------------------------------
def test_worker_error_reaches_the_messages_and_the_ui_stays_responsive(
    qtbot, window: MainWindow
) -> None:
    window.select_plugin("raiser")
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    with qtbot.waitSignal(window.runner.failed, timeout=20_000):
        assert window.generate()
        assert window.generate_button.text().startswith("Cancel")
    timer.stop()
    # The event loop kept turning while the worker ran (about 0.25 s of work).
    assert len(ticks) >= 3, f"the UI thread was blocked: {len(ticks)} timer ticks"
    qtbot.waitUntil(lambda: not window.runner.running, timeout=5000)
    # `running_changed` is queued from the worker thread after `failed`: on a busy machine
    # the window may not have handled it yet when the thread is already gone.
    qtbot.waitUntil(lambda: window.generate_button.text().startswith("Generate"), timeout=5000)
    last = messages(window)[-1]
    assert last.startswith("⚠ ") and "raiser" in last and "boom in the worker" in last
    assert window.messages_dock.isVisible()
    assert "boom in the worker" in window.statusBar().currentMessage()
    assert window.progress.format() == "failed"
    assert window.generate_button.text().startswith("Generate")
    assert window.plugin_list.isEnabled() and window.generate_button.isEnabled()
    assert not job_threads()
    # Still usable: another plugin runs, and so does the one that failed.
    window.select_plugin("echo")
    generate(qtbot, window)
    assert window.current is not None and window.current[1].plugin == "echo"
    window.select_plugin("raiser")
    with qtbot.waitSignal(window.runner.failed, timeout=20_000):
        assert window.generate()


def test_host_error_in_the_worker_is_reported_too(
    qtbot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not the plugin: the host's own code raises in the worker thread (a bug, a MemoryError)."""

    def broken_run_job(job: Any, state: Any) -> None:
        raise MemoryError("no room for the result")

    monkeypatch.setattr("gdl_studio.qt.worker.run_job", broken_run_job)
    window.select_plugin("tinygen")
    with qtbot.waitSignal(window.runner.failed, timeout=10_000) as blocker:
        assert window.generate()
    assert "MemoryError: no room for the result" in blocker.args[0]
    qtbot.waitUntil(lambda: not window.runner.running, timeout=5000)
    assert "MemoryError: no room for the result" in messages(window)[-1]
    monkeypatch.undo()
    generate(qtbot, window)
    assert window.current is not None and window.current[1].plugin == "tinygen"


# -- GPU out of memory ----------------------------------------------------------------------------
# What ONNX Runtime says when the GPU is full: the CUDA allocator, the BFC arena, cuDNN.
OOM_MESSAGES = {
    "cuda": "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while "
            "running MatMul node. Status Message: CUDA failure 2: out of memory ; GPU=0 ; "
            "expr=cudaMalloc((void**)&p, size);",
    "arena": "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while "
             "running MatMul node. Status Message: bfc_arena.cc:376 void* onnxruntime::BFCArena"
             "::AllocateRawInternal(size_t, bool) Failed to allocate memory for requested "
             "buffer of size 4294967296",
    "cudnn": "[ONNXRuntimeError] : 1 : FAIL : CUDNN failure 4: CUDNN_STATUS_ALLOC_FAILED",
}  # fmt: skip


def ort_error(message: str) -> Exception:
    from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException

    return RuntimeException(message)


class FullGpuSession:
    """A session that claims the CUDA provider and fails every run as ONNX Runtime does when
    the GPU's memory is exhausted (there is no GPU here to exhaust)."""

    def __init__(self, cpu: Any, error: Exception) -> None:
        self._cpu, self._error, self.runs = cpu, error, 0

    def get_providers(self) -> list[str]:
        return [CUDA, CPU]

    def get_inputs(self) -> Any:
        return self._cpu.get_inputs()

    def get_outputs(self) -> Any:
        return self._cpu.get_outputs()

    def run(self, *args: Any) -> Any:
        self.runs += 1
        raise self._error


class GpuFactory(SessionFactory):
    """A factory on a machine with CUDA: every session is asked for (CUDA, CPU)."""

    def choice(self) -> ProviderChoice:
        return ProviderChoice((CUDA, CPU), "")


class Maker:
    """Builds real CPU sessions, and a full GPU for any request that includes CUDA: failing on
    load (``fail_on="load"``) or on every run (``fail_on="run"``)."""

    def __init__(self, error: Exception, fail_on: str) -> None:
        self.error, self.fail_on = error, fail_on
        self.calls: list[tuple[str, ...]] = []
        self.gpu_sessions: list[FullGpuSession] = []

    def __call__(self, path: str, providers: Any) -> Any:
        self.calls.append(tuple(providers))
        cpu = runtime._ort_session(path, [CPU])
        if CUDA not in providers:
            return cpu
        if self.fail_on == "load":
            raise self.error
        self.gpu_sessions.append(FullGpuSession(cpu, self.error))
        return self.gpu_sessions[-1]


@pytest.mark.parametrize("fail_on", ["run", "load"])
@pytest.mark.parametrize("kind", sorted(OOM_MESSAGES))
def test_gpu_out_of_memory_falls_back_to_cpu_and_the_job_completes(
    root: Path, kind: str, fail_on: str
) -> None:
    maker = Maker(ort_error(OOM_MESSAGES[kind]), fail_on)
    studio = make_studio(root, GpuFactory(maker, available=[CUDA, CPU]))
    outcome = run_job(prepare_job(studio, "tinygen", params={"seed": 3, "batch": 2}))
    assert maker.calls == [(CUDA, CPU), (CPU,)]  # rebuilt on the CPU, once
    assert len(outcome.result.images) == 2
    assert outcome.notices == [
        "The GPU ran out of memory; model.onnx "
        + ("now runs" if fail_on == "run" else "runs")
        + " on the CPU."
    ]
    assert outcome.provenance.provider == "CPU: the GPU ran out of memory"
    # The same pixels as a run that used the CPU from the start.
    plain = run_job(prepare_job(make_studio(root), "tinygen", params={"seed": 3, "batch": 2}))
    for a, b in zip(outcome.result.images, plain.result.images, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    # The next job stays on the CPU: no second attempt, no second notice.
    again = run_job(prepare_job(studio, "tinygen", params={"seed": 4}))
    assert maker.calls == [(CUDA, CPU), (CPU,)]
    assert again.notices == [] and again.provenance.provider == "CPU: the GPU ran out of memory"
    if fail_on == "run":
        assert maker.gpu_sessions[0].runs == 1


def test_other_gpu_errors_are_reported_not_retried(root: Path) -> None:
    """Only an out-of-memory error moves a model to the CPU; any other failure is the job's."""
    maker = Maker(ort_error("CUDA failure 700: an illegal memory access was encountered"), "run")
    studio = make_studio(root, GpuFactory(maker, available=[CUDA, CPU]))
    with pytest.raises(JobError, match="illegal memory access"):
        run_job(prepare_job(studio, "tinygen"))
    assert maker.calls == [(CUDA, CPU)]
    load = Maker(ort_error("CUDA failure 35: CUDA driver version is insufficient"), "load")
    with pytest.raises(ModelLoadError, match="driver version"):
        run_job(prepare_job(make_studio(root, GpuFactory(load, available=[CUDA, CPU])),
                            "tinygen"))  # fmt: skip
    assert load.calls == [(CUDA, CPU)]


def test_gpu_out_of_memory_is_shown_in_the_window(qtbot, root: Path) -> None:
    maker = Maker(ort_error(OOM_MESSAGES["cuda"]), "run")
    win = open_window(qtbot, make_studio(root, GpuFactory(maker, available=[CUDA, CPU])))
    win.select_plugin("tinygen")
    generate(qtbot, win)
    assert win.current is not None and win.current[2] is not None  # done, and in the history
    assert win.progress.format() == "done"
    assert "ℹ The GPU ran out of memory; model.onnx now runs on the CPU." in messages(win)
    assert win.provider_label.text() == "provider: CPU: the GPU ran out of memory"
    assert read_provenance(win.current[2]).provider == "CPU: the GPU ran out of memory"


# -- disk full while saving -----------------------------------------------------------------------
def fill_disk(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Every atomic write into ``folder`` gets half its bytes written, then ENOSPC."""
    real = atomic._staged
    folder = folder.resolve()

    def staged(path: Path, write: Callable[[IO[bytes]], object]) -> str:
        if path.resolve().parent != folder:
            return real(path, write)

        def half_then_full(fh: IO[bytes]) -> None:
            buf = io.BytesIO()
            write(buf)
            fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        return real(path, half_then_full)

    monkeypatch.setattr(atomic, "_staged", staged)


PROV = Provenance(plugin="tinygen", plugin_version="1", model=None, model_sha256=None,
                  params={"seed": 1}, seed=1, provider="CPU", kind="image",
                  app_version="0", ort_version="0")  # fmt: skip


def results(version: int) -> dict[str, tuple[Result, str]]:
    import mido

    midi = mido.MidiFile()
    note = 60 + version
    on, off = mido.Message("note_on", note=note), mido.Message("note_off", note=note, time=96)
    midi.tracks.append(mido.MidiTrack([on, off]))
    colour = "red" if version == 1 else "blue"
    return {
        "image": (Result.image([Image.new("RGB", (8, 8), colour)] * 3), ".png"),
        "gif": (Result.image([Image.new("RGB", (8, 8), colour)] * 3), ".gif"),
        "text": (Result.of_text(f"version {version}"), ".txt"),
        "midi": (Result.of_midi(midi), ".mid"),
    }  # fmt: skip


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("what", sorted(results(1)))
def test_disk_full_while_saving_leaves_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    folder = tmp_path / "out"
    result, ext = results(1)[what]
    prov = Provenance(**{**PROV.__dict__, "kind": result.kind})
    save_result(result, prov, folder / f"result{ext}")
    before = snapshot(folder)
    fill_disk(monkeypatch, folder)
    newer, _ = results(2)[what]
    newer_prov = Provenance(**{**prov.__dict__, "seed": 2, "params": {"seed": 2}})
    with pytest.raises(OSError) as info:
        save_result(newer, newer_prov, folder / f"result{ext}")
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert snapshot(folder) == before  # same files, same bytes, no temporary left behind
    assert read_provenance(folder / f"result{ext}").seed == 1


def test_disk_full_on_save_as_is_reported_and_the_old_file_kept(
    qtbot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window.select_plugin("tinygen")
    generate(qtbot, window)
    target = tmp_path / "out" / "keep.png"
    monkeypatch.setattr("gdl_studio.qt.main_window.QFileDialog.getSaveFileName",
                        lambda *a, **k: (str(target), "*.png"))  # fmt: skip
    assert window.save_current() == target
    before = snapshot(target.parent)
    generate(qtbot, window)  # a different result (the seed is not locked)
    fill_disk(monkeypatch, target.parent)
    assert window.save_current() is None
    last = messages(window)[-1]
    assert last.startswith("⚠ Could not save keep.png") and "No space left on device" in last
    assert "Nothing was overwritten" in last
    assert snapshot(target.parent) == before
    assert window.messages_dock.isVisible()


def test_disk_full_in_the_history_keeps_the_result_on_screen(
    qtbot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = window.studio.history.folder
    history.mkdir(parents=True, exist_ok=True)
    fill_disk(monkeypatch, history)
    window.select_plugin("echo")
    window.panel.set_values({"prompt": "keep me", "repeat": 2})
    generate(qtbot, window)
    result, _, path = window.current
    assert result.text == "keep me keep me " and path is None  # shown, though not saved
    last = messages(window)[-1]
    assert "could not be saved to the history" in last and "No space left on device" in last
    assert "Save result as" in last
    assert list(history.iterdir()) == []  # nothing half-written, no temporary file
    # Room again: the user saves it where they like.
    monkeypatch.undo()
    target = tmp_path / "saved.txt"
    monkeypatch.setattr("gdl_studio.qt.main_window.QFileDialog.getSaveFileName",
                        lambda *a, **k: (str(target), "*.txt"))  # fmt: skip
    assert window.save_current() == target
    assert target.read_text() == "keep me keep me "


# -- kill -9 right after a result appears ---------------------------------------------------------
def spawn(code: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)  # the test's GDL_STUDIO_HOME and offscreen Qt
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
    )  # fmt: skip


def read_line(proc: subprocess.Popen[str], prefix: str, timeout: float = 90) -> str:
    """The first stdout line starting with ``prefix``; the child is killed after ``timeout``."""
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
    finally:
        watchdog.cancel()
    proc.wait()
    pytest.fail(f"no {prefix!r} line; exit {proc.returncode}:\n{proc.stderr.read()[-4000:]}")


WINDOW_CHILD = """
import sys
from pathlib import Path
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from gdl_studio.core.host import Studio
from gdl_studio.qt.main_window import MainWindow

app = QApplication([])
studio = Studio.create(include_builtin=False, include_entry_points=False,
                       extra_folders=[Path(sys.argv[1])])
win = MainWindow(studio)
win.show()
win.select_plugin("tinygen")
win.panel.set_values({"batch": 3, "steps": 2})

def shown(done):  # connected after the window's own slot: the result is on the canvas
    if done.outcome.provenance.plugin != "tinygen":
        return
    print("shown", done.entry.path, flush=True)
    win.select_plugin("slowpoke")  # the user goes on working: a long run is under way
    win.panel.set_values({"repeat": 50})
    QTimer.singleShot(0, win.generate)

win.runner.finished.connect(shown)
QTimer.singleShot(0, win.generate)
app.exec()
"""


@pytest.mark.skipif(not LINUX, reason="SIGKILL")
def test_kill_9_right_after_a_result_appears_keeps_it_in_the_history(qtbot, root: Path) -> None:
    proc = spawn(WINDOW_CHILD, str(root))
    shown = Path(read_line(proc, "shown "))
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    entries = History(Paths.default().history).entries()
    assert [e.path for e in entries] == [shown]
    assert load_result(shown).kind == "image"  # complete: it decodes
    assert entries[0].provenance.params["batch"] == 3
    # The restarted window lists it and shows it.
    win = open_window(qtbot, make_studio(root))
    assert [e.path for e in win.gallery.entries()] == [shown]
    assert win.current is not None and win.current[2] == shown


SAVE_LOOP_CHILD = """
import sys
from pathlib import Path
from gdl_studio.core.host import Studio, prepare_job, run_job

studio = Studio.create(include_builtin=False, include_entry_points=False,
                       extra_folders=[Path(sys.argv[1])])
for i in range(100000):
    plugin = ("tinygen", "echo", "scale")[i % 3]
    params = {"seed": i, "batch": 16} if plugin == "tinygen" else {"seed": i}
    outcome = run_job(prepare_job(studio, plugin, params=params))
    entry = studio.history.add(outcome.result, outcome.provenance)
    print("saved", entry.path, flush=True)
"""


@pytest.mark.skipif(not LINUX, reason="SIGKILL")
def test_kill_9_while_saving_loses_no_shown_result(root: Path) -> None:
    """Killed at an arbitrary moment of a stream of saves: every result reported as saved is
    there and readable, and no visible file in the history is half-written."""
    rng = random.Random(9)
    reported: list[Path] = []
    for _round in range(2):
        proc = spawn(SAVE_LOOP_CHILD, str(root))
        wanted = rng.randint(4, 10)
        for _ in range(wanted):
            reported.append(Path(read_line(proc, "saved ")))
        time.sleep(rng.uniform(0, 0.02))  # somewhere in the next job or save
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
        assert proc.stdout is not None
        reported += [Path(line[6:].strip()) for line in proc.stdout if line.startswith("saved ")]
    folder = Paths.default().history
    entries = {e.path: e for e in History(folder).entries()}
    assert set(reported) <= set(entries)
    for path in reported:
        load_result(path)
    for path in folder.iterdir():  # every visible file is complete
        if path.name.startswith("."):
            continue  # a temporary file the kill interrupted: never listed or opened
        if path.suffix == ".json":  # a text result's provenance sidecar
            json.loads(path.read_text(encoding="utf-8"))
        else:
            read_provenance(path)
            load_result(path)


# -- closing the window in the middle of a long run ------------------------------------------
def test_closing_the_window_mid_run_stops_the_job(qtbot, root: Path) -> None:
    before = set(child_pids()) if LINUX else set()  # e.g. pytest-xvfb's X server
    win = open_window(qtbot, make_studio(root))
    win.select_plugin("slowpoke")
    win.panel.set_values({"repeat": 50})
    previews: list[int] = []
    win.runner.preview.connect(lambda _: previews.append(1))
    assert win.generate()
    qtbot.waitUntil(lambda: len(previews) >= 2, timeout=10_000)
    thread = win.runner._thread
    assert thread is not None and thread.is_alive()
    started = time.monotonic()
    assert win.close()
    assert time.monotonic() - started < 4, "the window waited for the job to run out"
    assert not thread.is_alive() and not job_threads()
    if LINUX:
        assert set(child_pids()) <= before
    qtbot.wait(200)  # signals still queued from the worker are delivered without a crash
    assert win.studio.history.entries() == []  # nothing half-made was saved


CLOSE_CHILD = """
import sys, threading, time
from pathlib import Path
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from gdl_studio.core.host import Studio
from gdl_studio.qt.main_window import MainWindow

app = QApplication([])
studio = Studio.create(include_builtin=False, include_entry_points=False,
                       extra_folders=[Path(sys.argv[1])])
win = MainWindow(studio)
win.show()
win.select_plugin(sys.argv[2])
win.panel.set_values({"repeat": 50})
closed = []

def close():
    closed.append(time.monotonic())
    win.close()

def on_progress(fraction, message):
    if message.startswith("step") and not closed:  # well under way: the user closes it
        QTimer.singleShot(0, close)

win.runner.progress.connect(on_progress)
QTimer.singleShot(0, win.generate)
code = app.exec()
print("closed-in", time.monotonic() - closed[0], flush=True)
print("loop-ended", code, [th.name for th in threading.enumerate() if th.is_alive()], flush=True)
"""


@pytest.mark.parametrize("plugin", ["slowpoke", "stubborn"])
def test_closing_the_app_mid_run_exits_cleanly(root: Path, plugin: str) -> None:
    """The whole app: closing its window mid-run ends the process with status 0 and no
    traceback, even when the plugin ignores cancel and would run for ever (its thread is a
    daemon: it cannot keep the process alive or outlive it)."""
    proc = spawn(CLOSE_CHILD, str(root), plugin)
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the app did not exit after its window closed:\n{out}\n{err[-4000:]}")
    assert proc.returncode == 0, err[-4000:]
    assert "Traceback" not in err, err[-4000:]
    line = next(x for x in out.splitlines() if x.startswith("loop-ended"))
    assert line.startswith("loop-ended 0")
    took = float(next(x for x in out.splitlines() if x.startswith("closed-in")).split()[1])
    if plugin == "slowpoke":  # cancelled, and ended before the window was gone
        assert "gdl-job" not in line, line
        assert took < 4, f"closing took {took:.1f} s"
    else:  # the window gave up waiting; the thread is still stuck, and dies with the process
        assert "gdl-job" in line, line
        assert took < 15, f"closing took {took:.1f} s"
