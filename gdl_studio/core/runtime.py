"""One ONNX Runtime session factory: providers in priority order, the truth about which one
runs, cached lazy sessions, integrity and signature checks, cancel, and GPU-OOM fallback."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gdl_studio.core.errors import StudioError
from gdl_studio.core.graph_rewrites import REWRITES
from gdl_studio.core.jobs import Cancelled, TaskState
from gdl_studio.core.manifest import GraphSpec
from gdl_studio.core.onnx_check import check_external_data

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
GPU_PROVIDERS = (CUDA, "DmlExecutionProvider", "CoreMLExecutionProvider")
PROVIDER_ORDER = (*GPU_PROVIDERS, CPU)
SHORT_NAMES = {
    CUDA: "CUDA",
    "DmlExecutionProvider": "DirectML",
    "CoreMLExecutionProvider": "CoreML",
    CPU: "CPU",
}
_OOM_MARKERS = (
    "out of memory",
    "failed to allocate memory",
    "cudnn_status_alloc_failed",
    "cuda failure 2",
    "bfcarena",
)

OOM_REASON = "CPU: the GPU ran out of memory"


class ModelIntegrityError(StudioError):
    """A model file whose hash differs from its manifest: refused before it is loaded."""


class ModelSignatureError(StudioError):
    """A model whose inputs/outputs differ from what its manifest promises."""


class ModelLoadError(StudioError):
    """ONNX Runtime could not load a model file (corrupt, truncated, unsupported)."""


def ort() -> Any:
    """Import onnxruntime on first use (0.3 s), not at start-up."""
    import onnxruntime

    return onnxruntime


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# (path, size, mtime, ctime, inode) -> sha256: the start-up check of assets/SHA256SUMS and the
# factory's check of each model before its first load hash a file once between them, and the
# CLI and tests, which create a studio many times in one process, once in all.  Any write to
# a file changes its ctime, even one that puts the old mtime back, so a changed file is always
# hashed again.
_hashes: dict[tuple[str, int, int, int, int], str] = {}
_hashes_lock = threading.Lock()


def sha256_cached(path: Path) -> str:
    """:func:`sha256_file`, remembered for as long as the file is not written to."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    with _hashes_lock:
        known = _hashes.get(key)
    if known is None:
        known = sha256_file(path)
        with _hashes_lock:
            _hashes[key] = known
    return known


def is_oom_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _OOM_MARKERS)


@dataclass(frozen=True)
class ProviderChoice:
    """The providers to request, and why a GPU is not among them when it is not."""

    requested: tuple[str, ...]
    reason: str


def choose_providers(
    available: Sequence[str], env: dict[str, str] | None = None, platform: str = sys.platform
) -> ProviderChoice:
    """Order the available providers; ``GDL_STUDIO_PROVIDERS=cpu`` forces the CPU."""
    env = dict(os.environ) if env is None else env
    forced = env.get("GDL_STUDIO_PROVIDERS", "").strip().lower()
    if forced == "cpu":
        return ProviderChoice((CPU,), "CPU: chosen with GDL_STUDIO_PROVIDERS=cpu")
    wanted = [p for p in PROVIDER_ORDER if p in available]
    if not any(p in GPU_PROVIDERS for p in wanted):
        return ProviderChoice((CPU,), "CPU: this ONNX Runtime build has no GPU provider")
    if CUDA in wanted and platform.startswith("linux") and not Path("/dev/nvidiactl").exists():
        # Asking CUDA for a session with no driver only prints errors and costs start-up time.
        wanted.remove(CUDA)
        if not any(p in GPU_PROVIDERS for p in wanted):
            return ProviderChoice((CPU,), "CPU: no NVIDIA GPU found")
    return ProviderChoice(tuple(wanted), "")


def explain_fallback(requested: Sequence[str], actual: Sequence[str], reason: str) -> str:
    """One line for the status bar: the provider really used and, for a CPU fallback, why."""
    first = actual[0] if actual else CPU
    name = SHORT_NAMES.get(first, first)
    if first != CPU:
        return name
    if reason:
        return reason
    if any(p in GPU_PROVIDERS for p in requested):
        asked = ", ".join(SHORT_NAMES.get(p, p) for p in requested if p in GPU_PROVIDERS)
        return f"CPU: {asked} could not start (CUDA/cuDNN libraries not found?)"
    return "CPU"


# (path or model bytes, providers) -> session; called with threads=N as well for a graph that
# sets threads.
SessionMaker = Callable[..., Any]


def _ort_session(path: str | bytes, providers: Sequence[str], threads: int = 0) -> Any:
    rt = ort()
    opts = rt.SessionOptions()
    opts.log_severity_level = 3  # errors only: a failed GPU provider is reported by us instead
    if threads:
        opts.intra_op_num_threads = threads  # see GraphSpec.threads
    return rt.InferenceSession(path, sess_options=opts, providers=list(providers))


def prepared_model(path: Path, graph: GraphSpec) -> bytes:
    """The model at ``path`` as the manifest asks for it, as bytes for ONNX Runtime:

    - ``free_dims``: every input/output dimension that the manifest names (a string such as
      "height") but the file fixes is turned into a named one (ONNX Runtime cannot relax a
      fixed input); intermediate shapes are dropped so that it infers them anew;
    - ``rewrites``: the exact rewrites of :mod:`gdl_studio.core.graph_rewrites`.

    Uses the ``onnx`` package (protobuf editing)."""
    import onnx

    model = onnx.load(str(path))
    if graph.free_dims:
        pairs = ((model.graph.input, graph.inputs), (model.graph.output, graph.outputs))
        for values, declared in pairs:
            for value in values:
                dims = value.type.tensor_type.shape.dim
                want = declared.get(value.name)
                if want is None or len(want) != len(dims):
                    continue
                for dim, name in zip(dims, want, strict=True):
                    if isinstance(name, str) and dim.HasField("dim_value"):
                        dim.dim_param = name
        del model.graph.value_info[:]
    for name in graph.rewrites:
        if REWRITES[name](model):
            del model.graph.value_info[:]
    return bytes(model.SerializeToString())


class ModelSession:
    """A loaded graph: runs it, cancels it, and falls back to CPU on a GPU out-of-memory error."""

    def __init__(
        self,
        path: Path,
        graph: GraphSpec | None,
        choice: ProviderChoice,
        make: SessionMaker = _ort_session,
    ) -> None:
        self.path = Path(path)
        self.graph = graph
        self._make = make
        self._lock = threading.Lock()
        self.choice = choice
        self._notice: str | None = None  # for the first job that runs this session
        self._plain_run_options = ort().RunOptions()
        try:
            self._session = self._create(choice.requested)
        except ModelLoadError as exc:
            # Too big for the GPU's free memory already while loading: load it on the CPU.
            if not (any(p in GPU_PROVIDERS for p in choice.requested) and is_oom_error(exc)):
                raise
            log.warning("GPU out of memory loading %s: %s; loading on CPU", self.path.name, exc)
            self.choice = ProviderChoice((CPU,), OOM_REASON)
            self._session = self._create((CPU,))
            self._notice = f"The GPU ran out of memory; {self.path.name} runs on the CPU."
        if graph is not None:
            check_signature(self._session, graph, self.path)

    def _create(self, providers: Sequence[str]) -> Any:
        try:
            source: Any = str(self.path)
            if self.graph is not None and (self.graph.free_dims or self.graph.rewrites):
                source = prepared_model(self.path, self.graph)
            if self.graph is not None and self.graph.threads:
                session = self._make(source, providers, threads=self.graph.threads)
            else:
                session = self._make(source, providers)
        except Exception as exc:
            if isinstance(exc, (ModelIntegrityError, ModelSignatureError)):
                raise
            raise ModelLoadError(f"cannot load {self.path.name}: {exc}") from None
        self.providers = tuple(session.get_providers())
        self.provider_text = explain_fallback(providers, self.providers, self.choice.reason)
        return session

    @property
    def on_gpu(self) -> bool:
        return bool(self.providers) and self.providers[0] != CPU

    @property
    def input_shapes(self) -> dict[str, tuple[Any, ...]]:
        """Each input's shape as the graph declares it (strings for dynamic dimensions)."""
        return {i.name: tuple(i.shape) for i in self._session.get_inputs()}

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self._session.get_inputs()]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self._session.get_outputs()]

    def run(
        self,
        feeds: dict[str, Any],
        outputs: Sequence[str] | None = None,
        state: TaskState | None = None,
    ) -> list[Any]:
        """Run the graph; ``state.cancel()`` terminates the call and raises :class:`Cancelled`."""
        if state is not None:
            state.check()
            with self._lock:
                notice, self._notice = self._notice, None
            if notice:
                state.notice(notice)
        if state is None:
            # Nothing can cancel this call, so one shared, never-terminated RunOptions serves
            # (a new one per call is measurable in a per-character loop such as the text LSTM's).
            opts = self._plain_run_options
        else:
            opts = ort().RunOptions()
            state.register_run(opts)
        try:
            try:
                return list(self._session.run(list(outputs) if outputs else None, feeds, opts))
            except Exception as exc:
                if state is not None and state.cancelled:
                    raise Cancelled() from None
                if not (self.on_gpu and is_oom_error(exc)):
                    raise
                self._fall_back_to_cpu(exc, state)
                return list(self._session.run(list(outputs) if outputs else None, feeds, opts))
        finally:
            if state is not None:
                state.unregister_run(opts)

    def _fall_back_to_cpu(self, exc: BaseException, state: TaskState | None) -> None:
        with self._lock:
            if not self.on_gpu:
                return
            log.warning("GPU out of memory in %s: %s; rebuilding on CPU", self.path.name, exc)
            self.choice = ProviderChoice((CPU,), OOM_REASON)
            self._session = self._create((CPU,))
        if state is not None:
            state.notice(f"The GPU ran out of memory; {self.path.name} now runs on the CPU.")


def check_signature(session: Any, graph: GraphSpec, path: Path) -> None:
    """Compare the graph's real inputs/outputs with the manifest's promise."""
    for kind, declared, actual in (
        ("input", graph.inputs, session.get_inputs()),
        ("output", graph.outputs, session.get_outputs()),
    ):
        if not declared:
            continue
        real = {a.name: tuple(a.shape) for a in actual}
        for name, shape in declared.items():
            if name not in real:
                raise ModelSignatureError(
                    f"{path.name}: no {kind} named {name!r} (it has {', '.join(real) or 'none'})"
                )
            got = real[name]
            if len(got) != len(shape) or any(
                isinstance(d, int) and isinstance(g, int) and d != g
                for d, g in zip(shape, got, strict=False)
            ):
                raise ModelSignatureError(
                    f"{path.name}: {kind} {name!r} has shape {list(got)}, "
                    f"manifest says {list(shape)}"
                )


def _without_missing_cuda(available: list[str]) -> list[str]:
    """Drop CUDA when its provider library is not beside ONNX Runtime.

    The GPU build lists CUDA as compiled in even where the installer's CPU bundle left out the
    280 MB ``libonnxruntime_providers_cuda`` (installer/README.md); asking for it there would
    fail and blame missing CUDA libraries, while the truth is that this build has no GPU provider.
    """
    if CUDA not in available:
        return available
    capi = Path(ort().__file__).parent / "capi"
    if any(capi.glob("*onnxruntime_providers_cuda.*")):
        return available
    return [p for p in available if p != CUDA]


class SessionFactory:
    """Creates sessions lazily, once per model file, after checking the file's sha256."""

    def __init__(self, make: SessionMaker | None = None, available: Sequence[str] | None = None):
        self._make = make or _ort_session
        self._available = available
        self._sessions: dict[Path, ModelSession] = {}
        self._refused: dict[Path, str] = {}
        self._lock = threading.Lock()

    def providers_available(self) -> list[str]:
        if self._available is None:
            self._available = _without_missing_cuda(list(ort().get_available_providers()))
        return list(self._available)

    def choice(self) -> ProviderChoice:
        return choose_providers(self.providers_available())

    def verify(self, path: Path, sha256: str) -> None:
        """Refuse a model whose bytes differ from the manifest (hashed once while unchanged)."""
        actual = sha256_cached(path)
        if actual != sha256.lower():
            raise ModelIntegrityError(
                f"{path.name}: sha256 {actual[:12]}… does not match the manifest's {sha256[:12]}…"
            )

    def refuse(self, path: Path, reason: str) -> None:
        """Never load ``path`` (e.g. a shipped file whose bytes differ from assets/SHA256SUMS)."""
        path = Path(path).resolve()
        with self._lock:
            self._refused[path] = reason
            self._sessions.pop(path, None)

    def refusal(self, path: Path) -> str | None:
        """Why ``path`` is refused, or None."""
        return self._refused.get(Path(path).resolve())

    def session(self, path: Path, graph: GraphSpec | None = None) -> ModelSession:
        """The cached session for ``path``, created (after the hash check) on first use."""
        path = Path(path).resolve()
        with self._lock:
            if path in self._sessions:
                return self._sessions[path]
            if path in self._refused:
                raise ModelIntegrityError(self._refused[path])
            if not path.is_file():
                raise ModelLoadError(f"model file not found: {path}")
            if path.suffix.lower() != ".onnx":
                # A .pt/.pth checkpoint is a pickle, which runs code when loaded: never opened.
                raise ModelLoadError(f"{path.name}: only .onnx models are loaded")
            if graph is not None:
                self.verify(path, graph.sha256)
            try:
                check_external_data(path)
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"cannot load {path.name}: {exc}") from None
            sess = ModelSession(path, graph, self.choice(), self._make)
            self._sessions[path] = sess
            return sess

    def loaded(self) -> list[ModelSession]:
        return list(self._sessions.values())

    def evict(self, path: Path) -> None:
        self._sessions.pop(Path(path).resolve(), None)
