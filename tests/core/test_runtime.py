"""The ONNX Runtime layer: provider choice, fallbacks, integrity, signatures, caching, cancel."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gdl_studio.core import runtime
from gdl_studio.core.jobs import Cancelled, TaskState
from gdl_studio.core.manifest import GraphSpec
from gdl_studio.core.runtime import (
    CPU,
    CUDA,
    ModelIntegrityError,
    ModelLoadError,
    ModelSession,
    ModelSignatureError,
    ProviderChoice,
    SessionFactory,
    choose_providers,
    explain_fallback,
    is_oom_error,
)
from tests.fixtures.plugins import LATENT, SIDE, tiny_generator_onnx

DML = "DmlExecutionProvider"
COREML = "CoreMLExecutionProvider"


# -- provider choice ---------------------------------------------------------------------------
def no_nvidiactl(monkeypatch: pytest.MonkeyPatch, present: bool) -> None:
    real = Path.exists

    def exists(self: Path, *a: Any, **k: Any) -> bool:
        if str(self) == "/dev/nvidiactl":
            return present
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "exists", exists)


def test_choose_gpu_first_when_driver_present(monkeypatch: pytest.MonkeyPatch) -> None:
    no_nvidiactl(monkeypatch, present=True)
    c = choose_providers(["CPUExecutionProvider", CUDA, "TensorrtExecutionProvider"], {}, "linux")
    assert c.requested == (CUDA, CPU)
    assert c.reason == ""


def test_choose_orders_by_priority() -> None:
    c = choose_providers([CPU, COREML], {}, "darwin")
    assert c.requested == (COREML, CPU)
    c = choose_providers([CPU, DML, CUDA], {}, "win32")  # no /dev check on Windows
    assert c.requested == (CUDA, DML, CPU)


def test_env_forces_cpu() -> None:
    c = choose_providers([CUDA, CPU], {"GDL_STUDIO_PROVIDERS": " CPU "}, "win32")
    assert c.requested == (CPU,)
    assert "GDL_STUDIO_PROVIDERS=cpu" in c.reason
    # Anything else is ignored.
    c = choose_providers([CUDA, CPU], {"GDL_STUDIO_PROVIDERS": "gpu"}, "win32")
    assert c.requested == (CUDA, CPU)


def test_env_read_from_process_when_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GDL_STUDIO_PROVIDERS", "cpu")
    assert choose_providers([CUDA, CPU], platform="win32").requested == (CPU,)
    monkeypatch.delenv("GDL_STUDIO_PROVIDERS")
    assert choose_providers([CUDA, CPU], platform="win32").requested == (CUDA, CPU)


def test_cpu_only_build() -> None:
    c = choose_providers([CPU], {}, "linux")
    assert c.requested == (CPU,)
    assert c.reason == "CPU: this ONNX Runtime build has no GPU provider"


def test_cuda_without_driver_on_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    no_nvidiactl(monkeypatch, present=False)
    c = choose_providers([CUDA, CPU], {}, "linux")
    assert c.requested == (CPU,)
    assert c.reason == "CPU: no NVIDIA GPU found"
    # Another GPU provider survives the missing NVIDIA driver.
    c = choose_providers([CUDA, DML, CPU], {}, "linux")
    assert c.requested == (DML, CPU)


def test_explain_fallback() -> None:
    assert explain_fallback((CUDA, CPU), (CUDA, CPU), "") == "CUDA"
    assert explain_fallback((DML, CPU), (DML, CPU), "") == "DirectML"
    assert (
        explain_fallback((CPU,), (CPU,), "CPU: no NVIDIA GPU found") == "CPU: no NVIDIA GPU found"
    )
    text = explain_fallback((CUDA, CPU), (CPU,), "")
    assert text.startswith("CPU: CUDA could not start")
    assert explain_fallback((CPU,), (CPU,), "") == "CPU"
    assert explain_fallback((CPU,), (), "") == "CPU"


def test_is_oom_error() -> None:
    assert is_oom_error(RuntimeError("CUDA failure 2: out of memory"))
    assert is_oom_error(RuntimeError("BFCArena::AllocateRawInternal failed"))
    assert not is_oom_error(RuntimeError("Invalid rank for input"))


# -- fake sessions -----------------------------------------------------------------------------
@dataclass
class Arg:
    name: str
    shape: list[Any]


class FakeSession:
    def __init__(self, providers: list[str], fail: Exception | None = None) -> None:
        self.providers = providers
        self.fail = fail
        self.runs = 0

    def get_providers(self) -> list[str]:
        return list(self.providers)

    def get_inputs(self) -> list[Arg]:
        return [Arg("z", ["batch", LATENT])]

    def get_outputs(self) -> list[Arg]:
        return [Arg("image", ["batch", 1, SIDE, SIDE])]

    def run(self, outputs: Any, feeds: dict[str, Any], opts: Any = None) -> list[Any]:
        self.runs += 1
        if self.fail is not None:
            raise self.fail
        return [feeds["z"] * 2]


class FakeMaker:
    """Records every (path, providers) call; returns sessions built by ``build``."""

    def __init__(self, build) -> None:
        self.build = build
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.sessions: list[FakeSession] = []

    def __call__(self, path: str, providers) -> FakeSession:
        self.calls.append((path, tuple(providers)))
        s = self.build(tuple(providers))
        self.sessions.append(s)
        return s


def graph_for(path: Path, **kw: Any) -> GraphSpec:
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return GraphSpec(
        name="default",
        file=path.name,
        sha256=kw.pop("sha256", sha),
        inputs=kw.pop("inputs", {"z": ("batch", LATENT)}),
        outputs=kw.pop("outputs", {"image": ("batch", 1, SIDE, SIDE)}),
    )


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    tiny_generator_onnx(path)
    return path


def test_provider_fallback_is_explained(model_file: Path) -> None:
    maker = FakeMaker(lambda p: FakeSession([CPU]))  # CUDA asked for, CPU is what runs
    sess = ModelSession(model_file, graph_for(model_file), ProviderChoice((CUDA, CPU), ""), maker)
    assert maker.calls == [(str(model_file), (CUDA, CPU))]
    assert sess.providers == (CPU,)
    assert not sess.on_gpu
    assert sess.provider_text.startswith("CPU: CUDA could not start")


def test_provider_text_on_gpu(model_file: Path) -> None:
    maker = FakeMaker(lambda p: FakeSession(list(p)))
    sess = ModelSession(model_file, None, ProviderChoice((CUDA, CPU), ""), maker)
    assert sess.on_gpu and sess.provider_text == "CUDA"
    assert sess.input_names == ["z"] and sess.output_names == ["image"]


def test_gpu_oom_rebuilds_on_cpu(model_file: Path) -> None:
    def build(providers: tuple[str, ...]) -> FakeSession:
        if providers[0] == CUDA:
            return FakeSession(list(providers), RuntimeError("CUDA failure 2: out of memory"))
        return FakeSession([CPU])

    maker = FakeMaker(build)
    sess = ModelSession(model_file, graph_for(model_file), ProviderChoice((CUDA, CPU), ""), maker)
    assert sess.on_gpu
    notices: list[str] = []
    state = TaskState(on_notice=notices.append)
    z = np.arange(LATENT, dtype=np.float32).reshape(1, LATENT)
    (out,) = sess.run({"z": z}, state=state)
    np.testing.assert_array_equal(out, z * 2)
    assert maker.calls[1:] == [(str(model_file), (CPU,))]
    assert maker.sessions[0].runs == 1 and maker.sessions[1].runs == 1
    assert not sess.on_gpu
    assert sess.provider_text == "CPU: the GPU ran out of memory"
    assert len(state.notices) == 1 and "ran out of memory" in state.notices[0]
    assert notices == state.notices
    # Later runs stay on the CPU session, with no new rebuild.
    sess.run({"z": z}, state=state)
    assert len(maker.calls) == 2 and maker.sessions[1].runs == 2


def test_non_oom_error_propagates(model_file: Path) -> None:
    maker = FakeMaker(lambda p: FakeSession(list(p), ValueError("Invalid rank for input: z")))
    sess = ModelSession(model_file, None, ProviderChoice((CUDA, CPU), ""), maker)
    state = TaskState()
    with pytest.raises(ValueError, match=r"Invalid rank"):
        sess.run({"z": np.zeros((1, LATENT), np.float32)}, state=state)
    assert len(maker.calls) == 1
    assert state.notices == []


def test_oom_on_cpu_propagates(model_file: Path) -> None:
    maker = FakeMaker(lambda p: FakeSession([CPU], RuntimeError("Failed to allocate memory")))
    sess = ModelSession(model_file, None, ProviderChoice((CPU,), ""), maker)
    with pytest.raises(RuntimeError, match=r"allocate"):
        sess.run({"z": np.zeros((1, LATENT), np.float32)})
    assert len(maker.calls) == 1


def test_maker_failure_is_model_load_error(model_file: Path) -> None:
    def build(providers):
        raise RuntimeError("[ONNXRuntimeError] : 7 : INVALID_PROTOBUF")

    with pytest.raises(ModelLoadError, match=r"cannot load model.onnx: .*INVALID_PROTOBUF"):
        ModelSession(model_file, None, ProviderChoice((CPU,), ""), FakeMaker(build))


def test_sha256_mismatch_refused_before_loading(model_file: Path) -> None:
    maker = FakeMaker(lambda p: FakeSession([CPU]))
    factory = SessionFactory(maker, available=[CPU])
    graph = graph_for(model_file, sha256="0" * 64)
    with pytest.raises(ModelIntegrityError, match=r"model.onnx: sha256 .* does not match"):
        factory.session(model_file, graph)
    assert maker.calls == []
    assert factory.loaded() == []


def test_tampered_file_after_verify_is_caught(model_file: Path) -> None:
    maker = FakeMaker(lambda p: FakeSession([CPU]))
    factory = SessionFactory(maker, available=[CPU])
    graph = graph_for(model_file)
    factory.verify(model_file, graph.sha256)
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError):
        factory.verify(model_file, graph.sha256)


@pytest.mark.parametrize(
    ("inputs", "outputs", "match"),
    [
        ({"x": ("batch", LATENT)}, {}, "no input named 'x' \\(it has z\\)"),
        ({"z": ("batch", LATENT + 1)}, {}, "input 'z' has shape \\['batch', 4\\]"),
        ({"z": ("batch", LATENT, 1)}, {}, "input 'z' has shape"),
        ({}, {"image": ("batch", 3, SIDE, SIDE)}, "output 'image' has shape"),
        ({}, {"picture": ("batch",)}, "no output named 'picture'"),
    ],
)
def test_signature_mismatch(model_file: Path, inputs, outputs, match: str) -> None:
    maker = FakeMaker(lambda p: FakeSession([CPU]))
    factory = SessionFactory(maker, available=[CPU])
    graph = graph_for(model_file, inputs=inputs, outputs=outputs)
    with pytest.raises(ModelSignatureError, match=match):
        factory.session(model_file, graph)
    assert factory.loaded() == []


def test_signature_accepts_named_dims(model_file: Path) -> None:
    maker = FakeMaker(lambda p: FakeSession([CPU]))
    factory = SessionFactory(maker, available=[CPU])
    graph = graph_for(model_file, inputs={"z": ("n", LATENT)}, outputs={"image": ("n", 1, "h", 8)})
    assert factory.session(model_file, graph).providers == (CPU,)


# -- real ONNX Runtime -------------------------------------------------------------------------
def test_real_model_runs_and_is_cached(model_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnx
    from onnx import numpy_helper

    monkeypatch.setenv("GDL_STUDIO_PROVIDERS", "cpu")
    factory = SessionFactory()
    graph = graph_for(model_file)
    sess = factory.session(model_file, graph)
    assert factory.session(model_file, graph) is sess
    assert factory.session(model_file.parent / "." / model_file.name, graph) is sess
    assert factory.loaded() == [sess]
    # conftest forces the CPU, and says so.
    assert sess.providers[0] == CPU
    assert "GDL_STUDIO_PROVIDERS=cpu" in sess.provider_text

    z = np.random.default_rng(1).normal(size=(3, LATENT)).astype(np.float32)
    (img,) = sess.run({"z": z})
    w = numpy_helper.to_array(onnx.load(str(model_file)).graph.initializer[0])
    expected = np.tanh(z @ w).reshape(3, 1, SIDE, SIDE)
    assert img.shape == (3, 1, SIDE, SIDE)
    np.testing.assert_allclose(img, expected, rtol=1e-5, atol=1e-5)
    (named,) = sess.run({"z": z}, outputs=["image"], state=TaskState())
    np.testing.assert_array_equal(named, img)

    factory.evict(model_file)
    assert factory.session(model_file, graph) is not sess


def test_truncated_model_is_load_error(model_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.onnx"
    data = model_file.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    factory = SessionFactory()
    with pytest.raises(ModelLoadError, match=r"cannot load truncated.onnx"):
        factory.session(bad, graph_for(bad))
    with pytest.raises(ModelLoadError):
        factory.session(bad)
    assert factory.loaded() == []


def test_non_onnx_and_missing_files_refused(model_file: Path, tmp_path: Path) -> None:
    maker = FakeMaker(lambda p: FakeSession([CPU]))
    factory = SessionFactory(maker, available=[CPU])
    pt = tmp_path / "model.pt"
    pt.write_bytes(model_file.read_bytes())
    with pytest.raises(ModelLoadError, match=r"model.pt: only \.onnx models are loaded"):
        factory.session(pt)
    with pytest.raises(ModelLoadError, match=r"model file not found"):
        factory.session(tmp_path / "absent.onnx")
    assert maker.calls == []


def test_cancel_before_run_raises(model_file: Path) -> None:
    sess = SessionFactory().session(model_file)
    state = TaskState()
    state.cancel()
    assert state.cancelled
    with pytest.raises(Cancelled):
        sess.run({"z": np.zeros((1, LATENT), np.float32)}, state=state)
    with pytest.raises(Cancelled):
        state.check()


def slow_loop_onnx(path: Path, n: int = 256) -> None:
    """y = tanh(x @ W) repeated M times (M is an input): as slow as one asks."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["x_in", "W"], ["y0"]),
            helper.make_node("Tanh", ["y0"], ["x_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_in", TensorProto.FLOAT, [n, n]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [n, n]),
        ],
    )
    w = (np.random.default_rng(0).normal(size=(n, n)) / np.sqrt(n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Loop", ["M", "cond", "x"], ["y"], body=body)],
        "slow",
        [
            helper.make_tensor_value_info("M", TensorProto.INT64, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array(True), "cond")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_cancel_from_another_thread_terminates_a_long_run(tmp_path: Path) -> None:
    path = tmp_path / "slow.onnx"
    slow_loop_onnx(path)
    sess = SessionFactory().session(path)
    x = np.eye(256, dtype=np.float32)

    # Calibrate: the time per iteration on this machine.
    t = time.perf_counter()
    sess.run({"M": np.array(200, np.int64), "x": x})
    per_iter = (time.perf_counter() - t) / 200
    iterations = 2_000_000
    would_take = per_iter * iterations  # minutes, on any machine

    state = TaskState()
    timer = threading.Timer(0.3, state.cancel)
    timer.start()
    t = time.perf_counter()
    try:
        with pytest.raises(Cancelled):
            sess.run({"M": np.array(iterations, np.int64), "x": x}, state=state)
    finally:
        timer.cancel()
    took = time.perf_counter() - t
    assert took < 5.0
    assert took < would_take / 20
    # The RunOptions was unregistered: the session still runs for a new state.
    (y,) = sess.run({"M": np.array(2, np.int64), "x": x}, state=TaskState())
    assert y.shape == (256, 256)


def test_cancel_terminates_runs_registered_later() -> None:
    state = TaskState()
    opts = runtime.ort().RunOptions()
    state.cancel()
    state.register_run(opts)
    assert opts.terminate
    state.unregister_run(opts)


def test_task_state_reports() -> None:
    progress: list[tuple[float, str]] = []
    previews: list[Any] = []
    state = TaskState(on_progress=lambda f, m: progress.append((f, m)), on_preview=previews.append)
    assert state.wants_previews
    state.progress(1.7, "over")
    state.progress(-1, "under")
    state.preview("p")
    assert progress == [(1.0, "over"), (0.0, "under")]
    assert previews == ["p"]
    assert not TaskState().wants_previews


def test_graph_threads_reach_onnx_runtime(
    model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    monkeypatch.setenv("GDL_STUDIO_PROVIDERS", "cpu")
    one = dataclasses.replace(graph_for(model_file), threads=1)
    sess = SessionFactory().session(model_file, one)
    options = sess._session.get_session_options()
    assert options.intra_op_num_threads == 1
    # Without the setting, ONNX Runtime picks its own default (0 in the options).
    copy = model_file.with_name("copy.onnx")
    copy.write_bytes(model_file.read_bytes())
    default = SessionFactory().session(copy, graph_for(copy))
    assert default._session.get_session_options().intra_op_num_threads == 0


def fixed_relu_onnx(path: Path) -> Path:
    """A fully convolutional graph exported at one size: Relu over a fixed (1, 2, 4, 4)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "fixed", [x], [y],
                              value_info=[y])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_free_dims_lets_a_fixed_size_graph_run_at_any_size(tmp_path: Path) -> None:
    path = fixed_relu_onnx(tmp_path / "fixed.onnx")
    named = {"inputs": {"x": (1, 2, "h", "w")}, "outputs": {"y": (1, 2, "h", "w")}}
    x = np.random.default_rng(0).standard_normal((1, 2, 7, 9)).astype(np.float32)

    fixed = SessionFactory(available=["CPUExecutionProvider"]).session(
        path, graph_for(path, **named)
    )
    with pytest.raises(Exception, match=r"[Ii]nvalid dimensions"):  # as exported: 4 x 4 only
        fixed.run({"x": x})

    spec = replace(graph_for(path, **named), free_dims=True)
    session = SessionFactory(available=["CPUExecutionProvider"]).session(path, spec)
    (y,) = session.run({"x": x})
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    assert session.input_shapes["x"] == (1, 2, "h", "w")
    # Only what the manifest names is freed: a declared number stays fixed.
    half = replace(spec, inputs={"x": (1, 2, 4, "w")}, outputs={"y": (1, 2, 4, "w")})
    shapes = SessionFactory(available=["CPUExecutionProvider"]).session(path, half)
    assert shapes.input_shapes["x"] == (1, 2, 4, "w")
