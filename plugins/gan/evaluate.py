"""`gdl-studio eval gan`: class agreement, Fréchet distance against the floor and a naive
baseline, and memorisation, for 10,000 samples of the chosen model (numpy + ONNX Runtime)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from gdl_studio.core.host import PluginContext
from gdl_studio.core.image_eval import EvalSet, to_uint8
from gdl_studio.core.jobs import TaskState

from .compute import Generator

EVAL_SEED = 0
BATCH = 500


def sample(gen: Generator, n: int, seed: int = EVAL_SEED) -> tuple[np.ndarray, np.ndarray | None]:
    """``n`` uint8 samples with untruncated latents; classes in turn for conditional models."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, gen.latent))
    labels = np.arange(n) % len(gen.classes) if gen.conditional and gen.classes else None
    state = TaskState()
    parts = []
    for start in range(0, n, BATCH):
        lab = None if labels is None else labels[start : start + BATCH]
        parts.append(to_uint8(gen(z[start : start + BATCH], lab, state)))
    return np.concatenate(parts), labels


def evaluate(
    ctx: PluginContext,
    data: Path | None = None,
    samples: int = 10_000,
    classifier: Path | None = None,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    ev = EvalSet.for_model(ctx, data, classifier)
    gen = Generator(ctx)
    images, labels = sample(gen, samples)
    out = ev.scores(images, labels)
    out["eval_seconds"] = round(time.perf_counter() - t0, 1)
    return out
