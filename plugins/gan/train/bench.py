"""`gdl-studio bench gan`: ONNX Runtime vs torch eager on the same generator, batch 1 and 64.

Torch is only needed here (the [train] extra); the torch module is rebuilt from the shipped
ONNX file's weights, and its output is checked against ONNX Runtime before timing.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.jobs import TaskState
from gdl_studio.training.bench import median_ms


def bench(ctx: PluginContext, repeat: int = 30) -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        raise JobError("bench gan compares with torch: install the [train] extra") from None
    from gdl_studio_plugins.gan.compute import Generator

    from .export import torch_generator_from_onnx

    gen = Generator(ctx)
    card_path = ctx.graph_path().with_name("card.json")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    module = torch_generator_from_onnx(ctx.graph_path(), card).eval()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    state = TaskState()
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "repeat": repeat}
    for batch, suffix in ((1, ""), (64, "_b64")):
        rng = np.random.default_rng(0)
        z = rng.standard_normal((batch, gen.latent)).astype(np.float32)
        labels = (np.arange(batch) % max(1, len(gen.classes))).astype(np.int64)
        lab = labels if gen.conditional else None
        zt, lt = torch.from_numpy(z), torch.from_numpy(labels)

        def run_torch(zt: Any = zt, lt: Any = lt) -> Any:
            with torch.inference_mode():
                return module(zt, lt) if gen.conditional else module(zt)

        diff = float(np.abs(run_torch().numpy() - gen(z, lab, state)).max())
        if diff > 1e-3:
            raise JobError(f"torch and ONNX Runtime disagree by {diff:.2g}: not the same model")
        ort_ms = median_ms(lambda z=z, lab=lab: gen(z, lab, state), repeat)
        torch_ms = median_ms(run_torch, repeat)
        out[f"ort_ms{suffix}"] = round(ort_ms, 3)
        out[f"torch_ms{suffix}"] = round(torch_ms, 3)
        out[f"ratio{suffix}"] = round(torch_ms / ort_ms, 2)
        out[f"max_abs_diff{suffix}"] = diff
    return out
