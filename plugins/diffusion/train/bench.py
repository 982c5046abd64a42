"""`gdl-studio bench diffusion`: one denoising step in ONNX Runtime against torch eager on the
same network (batch 1, the studio's live case, and a batch of 16), and the time of 50 DDIM
steps for one image through the plugin's own sampler.

Torch is only needed here (the [train] extra); the torch module is rebuilt from the shipped
ONNX file's weights, checked against ONNX Runtime, and timed in a process of its own
(:func:`gdl_studio.training.bench.in_own_process`).  The ratio is torch / ONNX Runtime.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.jobs import TaskState
from gdl_studio.training.bench import has_torch, in_own_process, median_ms, time_module


def bench(ctx: PluginContext, repeat: int = 30) -> dict[str, Any]:
    if not has_torch():
        raise JobError("bench diffusion compares with torch: install the [train] extra")
    from gdl_studio_plugins.diffusion import samplers
    from gdl_studio_plugins.diffusion.compute import Denoiser

    den = Denoiser(ctx)
    card = json.loads(ctx.graph_path().with_name("card.json").read_text(encoding="utf-8"))
    state = TaskState()
    shape = (den.channels, den.size, den.size)
    cases: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    ort_out: dict[str, np.ndarray] = {}
    ort_ms: dict[str, float] = {}
    for batch, suffix in ((1, ""), (16, "_b16")):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        var = np.full(batch, 0.5, np.float32)
        labels = np.full(batch, den.null, np.int64)
        eps = den.eps_fn(labels, 1.0, state)
        cases[suffix] = (x, var, labels)
        ort_out[suffix] = eps(x, var)
        ort_ms[suffix] = median_ms(lambda eps=eps, x=x, var=var: eps(x, var), repeat)
    side = in_own_process(time_torch, str(ctx.graph_path()), card["architecture"], cases, repeat)
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
    sampler = samplers.from_config({"kind": "ddim", "steps": 50, "eta": 0.0})
    eps1 = den.eps_fn(np.full(1, den.null, np.int64), 1.0, state)
    times = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        t0 = time.perf_counter()
        for _ in sampler.run(eps1, den.schedule, rng.standard_normal((1, *shape)), rng):
            pass
        times.append(time.perf_counter() - t0)
    out["ddim50_s"] = round(float(np.median(times)), 4)
    out["torch_timed"] = "in its own process"
    return out


def time_torch(
    graph: str,
    architecture: dict[str, Any],
    cases: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    repeat: int,
) -> dict[str, Any]:
    """Torch eager's side, run by :func:`in_own_process`: the U-Net rebuilt from the ONNX
    file's weights, its noise estimates for each case's (x, variance, labels) (compared with
    ONNX Runtime's by the caller) and ms per step, with torch's default thread count."""
    import torch

    from .export import torch_from_onnx

    module = torch_from_onnx(graph, architecture).eval()
    return {**time_module(module, cases, repeat), "threads": torch.get_num_threads()}
