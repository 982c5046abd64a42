"""`gdl-studio bench gan`: ONNX Runtime vs torch eager on the same generator, batch 1 and 64.

Torch is only needed here (the [train] extra); the torch module is rebuilt from the shipped
ONNX file's weights, checked against ONNX Runtime, and timed in a process of its own
(:func:`gdl_studio.training.bench.in_own_process`).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.jobs import TaskState
from gdl_studio.training.bench import has_torch, in_own_process, median_ms, time_module


def bench(ctx: PluginContext, repeat: int = 30) -> dict[str, Any]:
    if not has_torch():
        raise JobError("bench gan compares with torch: install the [train] extra")
    from gdl_studio_plugins.gan.compute import Generator

    gen = Generator(ctx)
    card_path = ctx.graph_path().with_name("card.json")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    state = TaskState()
    cases: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    ort_out: dict[str, np.ndarray] = {}
    ort_ms: dict[str, float] = {}
    for batch, suffix in ((1, ""), (64, "_b64")):
        rng = np.random.default_rng(0)
        z = rng.standard_normal((batch, gen.latent)).astype(np.float32)
        labels = (np.arange(batch) % max(1, len(gen.classes))).astype(np.int64)
        lab = labels if gen.conditional else None
        cases[suffix] = (z, lab)
        ort_out[suffix] = gen(z, lab, state)
        ort_ms[suffix] = median_ms(lambda z=z, lab=lab: gen(z, lab, state), repeat)
    side = in_own_process(time_torch, str(ctx.graph_path()), card, cases, repeat)
    out: dict[str, Any] = {"threads": side["threads"], "repeat": repeat}
    for suffix in cases:
        diff = float(np.abs(side["outputs"][suffix] - ort_out[suffix]).max())
        if diff > 1e-3:
            raise JobError(f"torch and ONNX Runtime disagree by {diff:.2g}: not the same model")
        torch_ms = side["ms"][suffix]
        out[f"ort_ms{suffix}"] = round(ort_ms[suffix], 3)
        out[f"torch_ms{suffix}"] = round(torch_ms, 3)
        out[f"ratio{suffix}"] = round(torch_ms / ort_ms[suffix], 2)
        out[f"max_abs_diff{suffix}"] = diff
    out["torch_timed"] = "in its own process"
    return out


def time_torch(
    graph: str,
    card: dict[str, Any],
    cases: dict[str, tuple[np.ndarray, np.ndarray | None]],
    repeat: int,
) -> dict[str, Any]:
    """Torch eager's side, run by :func:`in_own_process`: the generator rebuilt from the ONNX
    file's weights, its images for each case's latents (and labels, for a conditional
    generator; compared with ONNX Runtime's by the caller) and ms per call."""
    import torch

    from .export import torch_generator_from_onnx

    module = torch_generator_from_onnx(graph, card).eval()
    return {**time_module(module, cases, repeat), "threads": torch.get_num_threads()}
