"""`gdl-studio bench text`: characters per second of a streamed generation (the plugin's own
loop: sampling, stop checks, previews), and one step in ONNX Runtime against torch eager.

Torch is needed here only (the [train] extra); the torch model is rebuilt from the shipped
ONNX file's weights and checked against ONNX Runtime before timing.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.jobs import TaskState
from gdl_studio.training.bench import median_ms


def bench(ctx: PluginContext, repeat: int = 300, chars: int = 3000) -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        raise JobError("bench text compares with torch: install the [train] extra") from None
    from gdl_studio_plugins.text.compute import Start, generate
    from gdl_studio_plugins.text.model import CharModel
    from gdl_studio_plugins.text.sampling import Sampler

    from .export import torch_model_from_onnx

    model = CharModel.from_context(ctx)
    card = ctx.card()
    if "architecture" not in card:
        raise JobError("bench text needs the model's card.json (its 'architecture')")
    module = torch_model_from_onnx(ctx.graph_path(), card)
    quantized = bool((card.get("quantization") or {}).get("kept"))

    # The same model? Twenty characters through both, state carried.
    rng = np.random.default_rng(0)
    ids = rng.integers(0, len(model.vocab), 20)
    state = model.zero_state(1)
    tstate = module.zero_state(1)
    diff = 0.0
    with torch.inference_mode():
        for i in ids:
            logits, state = model.step(np.array([i]), state)
            tlogits, tstate = module(torch.tensor([[int(i)]]), tstate)
            diff = max(diff, float(np.abs(logits[0] - tlogits[0, 0].numpy()).max()))
    if diff > (0.5 if quantized else 1e-3):
        raise JobError(f"torch and ONNX Runtime disagree by {diff:.2g}: not the same model")

    token = np.array([int(ids[0])])
    zero = model.zero_state(1)
    ort_ms = median_ms(lambda: model.step(token, zero), repeat, warmup=20)
    ttoken, tzero = torch.tensor([[int(ids[0])]]), module.zero_state(1)

    def torch_step() -> Any:
        with torch.inference_mode():
            return module(ttoken, tzero)

    torch_ms = median_ms(torch_step, repeat, warmup=20)

    # A whole generation as the plugin streams it (temperature 1: every draw is sampled).
    logits, state = model.step(token, zero)
    start = Start(logits, state, "", [], model.vocab.encode(""))
    t = time.perf_counter()
    *_, done = generate(
        model, start, Sampler(1.0), seed=0, length=chars, stop="length", task=TaskState()
    )
    seconds = time.perf_counter() - t
    return {
        "chars_per_s": round(len(done.text) / seconds, 1),
        "generated_chars": len(done.text),
        "ort_ms": round(ort_ms, 4),
        "torch_ms": round(torch_ms, 4),
        "ratio": round(torch_ms / ort_ms, 2),
        "max_abs_diff": diff,
        "quantized_int8": quantized,
        "torch_threads": torch.get_num_threads(),
        "repeat": repeat,
        "architecture": card["architecture"],
    }
