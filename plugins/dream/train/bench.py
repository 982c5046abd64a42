"""`gdl-studio bench dream`: one gradient step at 512 x 512 in ONNX Runtime against torch
autograd on the reference EfficientNet-Lite0 (the way one would dream in PyTorch), and the
whole dream the issue budgets: 3 octaves x 10 steps of a 512 px photo through the plugin's
own loop.

Torch is only needed here (the [train] extra), and is timed in a process of its own
(:func:`gdl_studio.training.bench.in_own_process`).  Both runtimes use their default thread
counts; the two gradients are checked against each other.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from PIL import Image

from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.jobs import TaskState
from gdl_studio.core.sample_photos import sample_photo
from gdl_studio.training.bench import has_torch, in_own_process, median_ms

SIDE = 512
DREAM = {"octaves": 3, "steps": 10}


def bench(ctx: PluginContext, repeat: int = 5) -> dict[str, Any]:
    if not has_torch():
        raise JobError("bench dream compares with torch: install the [train] extra")
    from gdl_studio_plugins.dream.compute import (
        PRESETS,
        DreamConfig,
        GradientGraph,
        dream,
        to_array,
    )

    graph = GradientGraph(ctx)
    state = TaskState()
    weights = np.zeros(16, np.float32)
    for index, value in PRESETS["swirls and eyes"].items():
        weights[index] = value
    classes = np.zeros(1000, np.float32)
    config = DreamConfig(layer_weights=weights, class_weights=classes, jitter=0, **DREAM)
    photo = Image.open(sample_photo("astronaut")).convert("RGB").resize((SIDE, SIDE))
    image = to_array(photo)

    def ort_step() -> tuple[float, np.ndarray]:
        return graph(image, config, (0, 0), state)

    l_ort, g_ort = ort_step()
    ort_ms = median_ms(ort_step, repeat, warmup=1)
    side = in_own_process(time_torch, image, weights, classes, repeat)
    l_torch, g_torch, torch_ms = side["loss"], side["gradient"], side["step_ms"]
    rel = float(np.linalg.norm(g_ort - g_torch) / np.linalg.norm(g_torch))
    # float32 ReLU6 masks flip at a few cells of a 512 px photo: ~0.1% of the gradient's norm
    if rel > 1e-2 or abs(l_ort - l_torch) > 1e-3 * abs(l_torch):
        raise JobError(f"torch and ONNX Runtime disagree (gradient {rel:.2g}): not the same model")

    run = DreamConfig(layer_weights=weights, class_weights=classes, **DREAM)  # default jitter
    t0 = time.perf_counter()
    for _ in dream(graph, image, run, state):
        pass
    dream_s = time.perf_counter() - t0
    return {
        "side": SIDE,
        "step_ort_ms": round(ort_ms, 1),
        "step_torch_ms": round(torch_ms, 1),
        "ratio": round(torch_ms / ort_ms, 2),
        "gradient_rel_diff": rel,
        "dream_s": round(dream_s, 2),
        "dream": f"{DREAM['octaves']} octaves x {DREAM['steps']} steps, {SIDE}x{SIDE} px",
        "torch_threads": side["threads"],
        "torch_timed": "in its own process",
        "repeat": repeat,
    }


def time_torch(
    image: np.ndarray, weights: np.ndarray, classes: np.ndarray, repeat: int
) -> dict[str, Any]:
    """Torch's side, run by :func:`in_own_process`: the loss and input gradient of ``image``
    by autograd on the reference EfficientNet-Lite0 (compared with ONNX Runtime's by the
    caller), and ms per step."""
    import torch

    from .export import load_reference
    from .graph import reference_loss

    net = load_reference()
    x = torch.from_numpy(image.transpose(2, 0, 1)[None].copy())
    lw, cw = torch.from_numpy(weights), torch.from_numpy(classes)

    def torch_step() -> tuple[float, np.ndarray]:
        xr = x.clone().requires_grad_(True)
        loss = reference_loss(net, xr, lw, cw)
        loss.backward()
        assert xr.grad is not None
        return loss.item(), xr.grad[0].numpy().transpose(1, 2, 0)

    loss, gradient = torch_step()
    step_ms = median_ms(torch_step, repeat, warmup=1)
    return {
        "loss": loss,
        "gradient": gradient,
        "step_ms": step_ms,
        "threads": torch.get_num_threads(),
    }
