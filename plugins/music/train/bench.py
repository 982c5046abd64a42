"""`gdl-studio bench music`: what a token costs with the key/value cache at 128, 512 and
2,048 cached tokens, what it would cost without (the whole sequence through the prefill
graph for every new token), torch eager against ONNX Runtime per token, and the plugin's own
generation loop (sampling, grammar masks, previews).

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

LENGTHS = (128, 512, 2048)


def bench(ctx: PluginContext, repeat: int = 40) -> dict[str, Any]:
    if not has_torch():
        raise JobError("bench music compares with torch: install the [train] extra")
    from gdl_studio_plugins.music.compute import generate
    from gdl_studio_plugins.music.model import MusicModel
    from gdl_studio_plugins.music.sampling import Sampler

    model = MusicModel.from_context(ctx)
    card = ctx.card()
    if "architecture" not in card:
        raise JobError("bench music needs the model's card.json (its 'architecture')")
    tok = model.tokenizer
    rng = np.random.default_rng(0)
    masks = [tok.allowed(p) for p in range(tok.period)]

    def valid_ids(n: int) -> np.ndarray:
        ids = [0] + [int(rng.choice(np.flatnonzero(masks[i % tok.period]))) for i in range(n - 1)]
        return np.array([ids], np.int64)

    check, by_length = valid_ids(64), {n: valid_ids(n) for n in LENGTHS}
    with_cache, without, ort_ms = time_onnx_runtime(model, by_length, repeat)
    # Torch gets as many threads as the manifest gives the step graph (GraphSpec.threads).
    step_threads = ctx.model.graphs["step"].threads if ctx.model else 0
    side = in_own_process(
        time_torch, str(ctx.graph_path("prefill")), card, check, by_length, step_threads, repeat
    )
    # The same model? The 64 tokens' logits from both.
    diff = float(np.abs(model.prefill(check)[0] - side["logits"]).max())
    if diff > 1e-3:
        raise JobError(f"torch and ONNX Runtime disagree by {diff:.2g}: not the same model")
    torch_ms = side["step_ms"]

    # The plugin's loop: 8 bars composed at temperature 1 under the grammar's masks.
    n_tokens = 8 * tok.steps_per_bar()
    t = time.perf_counter()
    *_, done = generate(model, [], n_tokens, Sampler(1.0), 0, None, TaskState())
    seconds = time.perf_counter() - t
    return {
        "tokens_per_s": {str(n): v for n, v in with_cache.items()},
        "no_cache_tokens_per_s": {str(n): v for n, v in without.items()},
        "ort_step_ms": {str(n): round(v, 4) for n, v in ort_ms.items()},
        "torch_step_ms": {str(n): round(v, 4) for n, v in torch_ms.items()},
        "ratio": round(torch_ms[512] / ort_ms[512], 2),
        "ratio_by_length": {str(n): round(torch_ms[n] / ort_ms[n], 2) for n in LENGTHS},
        "generate_tokens_per_s": round(len(done) / seconds, 1),
        "generated_tokens": len(done),
        "max_abs_diff": diff,
        "threads": side["threads"],
        "torch_timed": "in its own process",
        "repeat": repeat,
        "architecture": card["architecture"],
    }


def time_onnx_runtime(
    model: Any, by_length: dict[int, np.ndarray], repeat: int
) -> tuple[dict[int, float], dict[int, float], dict[int, float]]:
    """Per cached length: tokens/s with the cache, tokens/s without it (the prefill graph
    over the whole sequence), and ms per step."""
    with_cache, without, ort_ms = {}, {}, {}
    for n, ids in by_length.items():
        _, cache = model.prefill(ids)
        token = np.array([int(ids[0, -1])])

        def ort_step(c: Any = cache, t: np.ndarray = token) -> None:
            model.step(t, c)
            c.length -= 1  # timed at n cached tokens every time

        ms = median_ms(ort_step, repeat, warmup=5)
        ort_ms[n] = ms
        with_cache[n] = round(1000.0 / ms, 1)
        pre_ms = median_ms(lambda i=ids: model.prefill(i), max(3, repeat // 8), warmup=1)
        without[n] = round(1000.0 / pre_ms, 1)
    return with_cache, without, ort_ms


def time_torch(
    prefill: str,
    card: dict[str, Any],
    check: np.ndarray,
    by_length: dict[int, np.ndarray],
    threads: int,
    repeat: int,
) -> dict[str, Any]:
    """Torch eager's side, run by :func:`in_own_process`: the model rebuilt from the prefill
    graph's weights, its logits for ``check`` (compared with ONNX Runtime's by the caller)
    and ms per step at each cached length, with the step graph's own algorithm."""
    import torch

    from .model import torch_model_from_onnx

    if threads:
        torch.set_num_threads(threads)
    module = torch_model_from_onnx(prefill, card)
    step_ms = {}
    with torch.inference_mode():
        logits = module(torch.from_numpy(check)).numpy()
        for n, ids in by_length.items():
            _, cache = module.extend(torch.from_numpy(ids), None)
            token = torch.from_numpy(ids[0, -1:].copy())
            step_ms[n] = median_ms(lambda c=cache, t=token: module.step(t, c), repeat, warmup=5)
    return {"logits": logits, "step_ms": step_ms, "threads": torch.get_num_threads()}
