"""A real GPU out-of-memory error, not a fake one: a CUDA session whose memory is capped by
ONNX Runtime's ``gpu_mem_limit`` runs a graph that needs more.  The studio's session must
rebuild itself on the CPU, finish the run with the right answer and say so.

Skipped unless ONNX Runtime has the CUDA provider and an NVIDIA GPU is there (the ``gpu``
marker); the fake-session tests in test_faults.py cover the same path everywhere else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from gdl_studio.core import runtime  # noqa: E402
from gdl_studio.core.jobs import TaskState  # noqa: E402
from gdl_studio.core.runtime import CPU, CUDA, ModelSession, ProviderChoice  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        CUDA not in ort.get_available_providers() or not Path("/dev/nvidiactl").exists(),
        reason="needs ONNX Runtime's CUDA provider and an NVIDIA GPU",
    ),
]

LIMIT = 64 << 20  # the CUDA arena's cap
SIDE = 8192  # the graph's intermediate: SIDE x SIDE float32 = 256 MB, four times the cap


def big_graph(path: Path) -> Path:
    """x [1] -> the largest element of x expanded to SIDE x SIDE (= x): one tensor over the cap."""
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [SIDE, SIDE])
    graph = helper.make_graph(
        [
            helper.make_node("Expand", ["x", "shape"], ["big"]),
            helper.make_node("ReduceMax", ["big"], ["y"], keepdims=0),
        ],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        [shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


def capped_session(path: str | bytes, providers: list[str], threads: int = 0) -> object:
    """ONNX Runtime sessions as the studio makes them, with the CUDA arena capped."""
    options = {"gpu_mem_limit": str(LIMIT), "arena_extend_strategy": "kSameAsRequested"}
    chosen = [(p, options) if p == CUDA else p for p in providers]
    return ort.InferenceSession(path, providers=chosen)


def test_a_real_cuda_out_of_memory_error_moves_the_model_to_the_cpu(tmp_path: Path) -> None:
    session = ModelSession(
        big_graph(tmp_path / "big.onnx"), None, ProviderChoice((CUDA, CPU), ""), capped_session
    )
    assert session.on_gpu, session.providers  # it did start on the GPU
    state = TaskState()
    (y,) = session.run({"x": np.array([0.5], np.float32)}, state=state)
    assert float(y) == 0.5  # finished, on the CPU
    assert not session.on_gpu and session.choice.reason == runtime.OOM_REASON
    assert session.provider_text == runtime.OOM_REASON
    assert any("ran out of memory" in n for n in state.notices), state.notices
