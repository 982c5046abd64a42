"""Load-time graph rewrites: the fused graph computes what the original does, with fewer
nodes, and a pattern that differs in any detail is left alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from gdl_studio.core.graph_rewrites import fuse_instance_norm
from gdl_studio.core.manifest import GraphSpec, ManifestError, parse_manifest
from gdl_studio.core.runtime import SessionFactory, sha256_file

C, STYLES = 4, 3


def conditional_norm_model(power: float = 2.0, axes: tuple[int, ...] = (2, 3)) -> onnx.ModelProto:
    """Conv, then an instance norm written out as Magenta's exporter writes it, with the
    scale and shift computed from a style-weights input, then Relu."""
    rng = np.random.default_rng(0)

    def const(name: str, value: np.ndarray | float) -> onnx.NodeProto:
        arr = np.asarray(value, np.float32 if not isinstance(value, np.ndarray) else value.dtype)
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr, name))

    nodes = [
        helper.make_node("Conv", ["image", "w"], ["x"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Unsqueeze", ["style", "ax1"], ["s"]),
        helper.make_node("Mul", ["s", "gamma_table"], ["gm"]),
        helper.make_node("ReduceSum", ["gm", "ax0"], ["g"], keepdims=0),
        helper.make_node("Reshape", ["g", "shape"], ["g4"]),
        helper.make_node("Mul", ["s", "beta_table"], ["bm"]),
        helper.make_node("ReduceSum", ["bm", "ax0"], ["b"], keepdims=0),
        helper.make_node("Reshape", ["b", "shape"], ["b4"]),
        helper.make_node("ReduceMean", ["x"], ["mean"], axes=list(axes), keepdims=1),
        helper.make_node("Sub", ["x", "mean"], ["d"]),
        const("two", power),
        helper.make_node("Pow", ["d", "two"], ["d2"]),
        helper.make_node("ReduceMean", ["d2"], ["var"], axes=list(axes), keepdims=1),
        const("eps", 1e-5),
        helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["sd"]),
        const("one", 1.0),
        helper.make_node("Div", ["one", "sd"], ["inv"]),
        helper.make_node("Mul", ["d", "inv"], ["n"]),
        helper.make_node("Mul", ["n", "g4"], ["ng"]),
        helper.make_node("Add", ["ng", "b4"], ["nb"]),
        helper.make_node("Relu", ["nb"], ["out"]),
    ]
    inits = [
        numpy_helper.from_array(rng.standard_normal((C, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((STYLES, C)).astype(np.float32), "gamma_table"),
        numpy_helper.from_array(rng.standard_normal((STYLES, C)).astype(np.float32), "beta_table"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(np.array([0], np.int64), "ax0"),
        numpy_helper.from_array(np.array([1, C, 1, 1], np.int64), "shape"),
    ]
    graph = helper.make_graph(
        nodes,
        "cin",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"]),
            helper.make_tensor_value_info("style", TensorProto.FLOAT, [STYLES]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, C, "h", "w"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def run(model: onnx.ModelProto, image: np.ndarray, style: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"image": image, "style": style})[0]


def test_a_written_out_instance_norm_becomes_one_node_with_the_same_output() -> None:
    rng = np.random.default_rng(1)
    image = rng.standard_normal((1, 3, 13, 17)).astype(np.float32) * 3 + 1
    style = np.array([0.2, 0.5, 0.3], np.float32)
    original = conditional_norm_model()
    want = run(original, image, style)
    fused = conditional_norm_model()
    assert fuse_instance_norm(fused) == 1
    ops = [n.op_type for n in fused.graph.node]
    assert ops.count("InstanceNormalization") == 1
    assert not {"Pow", "Sqrt", "Div", "Sub", "ReduceMean", "Constant"} & set(ops)
    np.testing.assert_allclose(run(fused, image, style), want, rtol=1e-5, atol=1e-5)
    onnx.checker.check_model(fused)


@pytest.mark.parametrize("variant", [{"power": 3.0}, {"axes": (1, 2, 3)}])
def test_a_pattern_that_differs_is_left_alone(variant: dict) -> None:
    model = conditional_norm_model(**variant)
    before = [n.op_type for n in model.graph.node]
    assert fuse_instance_norm(model) == 0
    assert [n.op_type for n in model.graph.node] == before


def test_the_manifest_names_rewrites_and_the_runtime_applies_them(tmp_path: Path) -> None:
    path = tmp_path / "cin.onnx"
    onnx.save(conditional_norm_model(), str(path))
    spec = GraphSpec("default", path.name, sha256_file(path), rewrites=("instance-norm",))
    session = SessionFactory(available=["CPUExecutionProvider"]).session(path, spec)
    image = np.ones((1, 3, 5, 5), np.float32)
    style = np.array([1, 0, 0], np.float32)
    np.testing.assert_allclose(
        session.run({"image": image, "style": style})[0],
        run(conditional_norm_model(), image, style),
        atol=1e-5,
    )
    base = {"id": "p", "name": "P", "version": "1", "api": 1, "kind": "image",
            "entry": {"run": "m:run"}}  # fmt: skip
    graph = {"id": "m", "file": "m.onnx", "sha256": "0" * 64}
    ok = parse_manifest({**base, "models": [{**graph, "rewrites": ["instance-norm"]}]})
    assert ok.models[0].graphs["default"].rewrites == ("instance-norm",)
    with pytest.raises(ManifestError, match="rewrites: 'layer-norm' is not one of"):
        parse_manifest({**base, "models": [{**graph, "rewrites": ["layer-norm"]}]})
