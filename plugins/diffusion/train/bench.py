"""`gdl-studio bench diffusion`: one denoising step in ONNX Runtime against torch eager on the
same network (batch 1, the studio's live case, and a batch of 16), and the time of 50 DDIM
steps for one image through the plugin's own sampler.

Torch is only needed here (the [train] extra); the torch module is rebuilt from the shipped
ONNX file's weights and checked against ONNX Runtime before anything is timed.  The ratio is
torch / ONNX Runtime, measured in the same run one after the other.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.jobs import TaskState
from gdl_studio.training.bench import median_ms


def bench(ctx: PluginContext, repeat: int = 30) -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        raise JobError("bench diffusion compares with torch: install the [train] extra") from None
    from gdl_studio_plugins.diffusion import samplers
    from gdl_studio_plugins.diffusion.compute import Denoiser

    from .export import torch_from_onnx

    den = Denoiser(ctx)
    card = json.loads(ctx.graph_path().with_name("card.json").read_text(encoding="utf-8"))
    module = torch_from_onnx(ctx.graph_path(), card["architecture"]).eval()
    state = TaskState()
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "repeat": repeat}
    shape = (den.channels, den.size, den.size)
    for batch, suffix in ((1, ""), (16, "_b16")):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        var = np.full(batch, 0.5, np.float32)
        labels = np.full(batch, den.null, np.int64)
        eps = den.eps_fn(labels, 1.0, state)
        xt, vt, lt = torch.from_numpy(x), torch.from_numpy(var), torch.from_numpy(labels)

        def run_torch(xt: Any = xt, vt: Any = vt, lt: Any = lt) -> Any:
            with torch.inference_mode():
                return module(xt, vt, lt)

        diff = float(np.abs(run_torch().numpy() - eps(x, var)).max())
        if diff > 1e-3:
            raise JobError(f"torch and ONNX Runtime disagree by {diff:.2g}: not the same model")
        ort_ms = median_ms(lambda eps=eps, x=x, var=var: eps(x, var), repeat)
        torch_ms = median_ms(run_torch, repeat)
        out[f"ort_ms{suffix}"] = round(ort_ms, 3)
        out[f"torch_ms{suffix}"] = round(torch_ms, 3)
        out[f"ratio{suffix}"] = round(torch_ms / ort_ms, 2)
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
    return out
