"""`gdl-studio bench text`: characters per second of a streamed generation (the plugin's own
loop: sampling, stop checks, previews), and one step in ONNX Runtime against torch eager.

Torch is needed here only (the [train] extra); the torch model is rebuilt from the shipped
ONNX file's weights, checked against ONNX Runtime, and timed in a process of its own
(:func:`gdl_studio.training.bench.in_own_process`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.jobs import TaskState
from gdl_studio.training.bench import has_torch, in_own_process, median_ms


def bench(ctx: PluginContext, repeat: int = 300, chars: int = 3000) -> dict[str, Any]:
    if not has_torch():
        raise JobError("bench text compares with torch: install the [train] extra")
    from gdl_studio_plugins.text.compute import Start, generate
    from gdl_studio_plugins.text.model import CharModel
    from gdl_studio_plugins.text.sampling import Sampler

    model = CharModel.from_context(ctx)
    card = ctx.card()
    if "architecture" not in card:
        raise JobError("bench text needs the model's card.json (its 'architecture')")
    quantized = bool((card.get("quantization") or {}).get("kept"))

    rng = np.random.default_rng(0)
    ids = rng.integers(0, len(model.vocab), 20)
    token = np.array([int(ids[0])])
    zero = model.zero_state(1)
    ort_ms = median_ms(lambda: model.step(token, zero), repeat, warmup=20)
    side = in_own_process(time_torch, str(ctx.graph_path()), card, ids, repeat)

    # The same model? Twenty characters through both, state carried.
    state = model.zero_state(1)
    diff = 0.0
    for i, tlogits in zip(ids, side["logits"], strict=True):
        logits, state = model.step(np.array([i]), state)
        diff = max(diff, float(np.abs(logits[0] - tlogits).max()))
    if diff > (0.5 if quantized else 1e-3):
        raise JobError(f"torch and ONNX Runtime disagree by {diff:.2g}: not the same model")
    torch_ms = side["step_ms"]

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
        "torch_threads": side["threads"],
        "torch_timed": "in its own process",
        "repeat": repeat,
        "architecture": card["architecture"],
    }


def time_torch(path: str, card: dict[str, Any], ids: np.ndarray, repeat: int) -> dict[str, Any]:
    """Torch eager's side, run by :func:`in_own_process`: the model rebuilt from the graph's
    weights, its logits for ``ids`` fed one by one with the state carried (compared with
    ONNX Runtime's by the caller), and ms per step from the zero state on ``ids[0]``."""
    import torch

    from .export import torch_model_from_onnx

    module = torch_model_from_onnx(path, card)
    logits = []
    with torch.inference_mode():
        state = module.zero_state(1)
        for i in ids:
            out, state = module(torch.tensor([[int(i)]]), state)
            logits.append(out[0, 0].numpy())
    token, zero = torch.tensor([[int(ids[0])]]), module.zero_state(1)

    def step() -> Any:
        with torch.inference_mode():
            return module(token, zero)

    step_ms = median_ms(step, repeat, warmup=20)
    return {"logits": logits, "step_ms": step_ms, "threads": torch.get_num_threads()}
