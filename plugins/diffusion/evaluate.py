"""`gdl-studio eval diffusion`: the GAN plugin's evaluator (an independent classifier's
features: Fréchet distance against the train/test floor and a naive baseline, class agreement,
memorisation) on 10,000 samples of 50 DDIM steps with the studio's default eta (1: fresh
noise at every step), plus FD as a function of the step count and, at 50 steps, for the
deterministic eta = 0.

FD shrinks with more samples (its estimate is biased upwards for small ones), so the curve
over step counts is measured on fewer samples each (``by_steps_samples``) and printed beside
the floor measured on the same number of training images: compare each curve point with that
floor, not with the 10,000-sample ``fd_floor``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from gdl_studio.core.host import PluginContext
from gdl_studio.core.image_eval import EvalSet, to_uint8
from gdl_studio.core.jobs import TaskState
from gdl_studio.core.metrics import frechet_distance

from . import samplers
from .compute import Denoiser

EVAL_SEED = 0
BATCH = 500
STEP_COUNTS = (10, 25, 50, 100, 250)
ETA = 1.0  # the studio's default: fresh noise at every DDIM step (see plugin.toml)


def sample(
    den: Denoiser,
    n: int,
    steps: int,
    eta: float = ETA,
    seed: int = EVAL_SEED,
    state: TaskState | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``n`` uint8 samples with DDIM (``eta``; the seed fixes the noise of every step too);
    classes in turn for a class model."""
    state = state or TaskState()
    rng = np.random.default_rng(seed)
    shape = (den.channels, den.size, den.size)
    labels = np.arange(n) % den.null if den.classes else None
    sampler = samplers.from_config({"kind": "ddim", "steps": steps, "eta": eta})
    parts = []
    for start in range(0, n, BATCH):
        m = min(BATCH, n - start)
        lab = labels[start : start + m] if labels is not None else np.full(m, den.null)
        x = rng.standard_normal((m, *shape))
        *_, (final, _) = sampler.run(den.eps_fn(lab, 1.0, state), den.schedule, x, rng)
        parts.append(to_uint8(final))
    return np.concatenate(parts), labels


def evaluate(
    ctx: PluginContext,
    data: Path | None = None,
    samples: int = 10_000,
    by_steps_samples: int = 500,
    step_counts: tuple[int, ...] = STEP_COUNTS,
    classifier: Path | None = None,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    ev = EvalSet.for_model(ctx, data, classifier)
    train, clf = ev.train, ev.classifier
    den = Denoiser(ctx)
    images, labels = sample(den, samples, 50)
    out = ev.scores(images, labels)
    sample_seconds = time.perf_counter() - t0
    _, test_feats = clf(ev.test.images)
    rng = np.random.default_rng(1)
    sub = train.images[
        rng.choice(len(train), size=min(by_steps_samples, len(train)), replace=False)
    ]
    out["fd_by_steps_floor"] = frechet_distance(clf(sub)[1], test_feats)
    by_steps: dict[str, float] = {}
    for steps in step_counts:
        if steps == 50 and by_steps_samples <= samples:
            few = images[:by_steps_samples]  # the same seeds: the first of the 50-step samples
        else:
            few, _ = sample(den, by_steps_samples, steps)
        by_steps[str(steps)] = frechet_distance(clf(few)[1], test_feats)
    # The deterministic path (eta 0) at 50 steps, on as many samples as the curve.
    det, _ = sample(den, by_steps_samples, 50, eta=0.0)
    by_eta = {str(ETA): by_steps.get("50"), "0.0": frechet_distance(clf(det)[1], test_feats)}
    out.update({
        "steps": 50,
        "sampler": f"ddim (eta {ETA})",
        "fd_by_steps": by_steps,
        "fd_by_eta_50_steps": by_eta,
        "fd_by_steps_samples": by_steps_samples,
        "sample_seconds": round(sample_seconds, 1),
        "eval_seconds": round(time.perf_counter() - t0, 1),
    })  # fmt: skip
    return out
