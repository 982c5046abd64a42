"""``gdl-studio eval dream``: does the ascent ascend, and what do the presets look like?

Each preset dreams on each sample photo (or each image of ``--data``, a folder) with Chollet's
recipe as the book gives it: 3 octaves of 20 steps, scale 1.4, step 0.01, max loss 10, no
jitter.  ``monotonic`` is true when, within every octave of every photo and preset, the loss
never falls from one kept step to the next.  The loop takes back a step that lowered the loss
and retries it at half the size, at most 4 times (compute.gradient_ascent); with a correct
gradient a small enough step always rises, so ``monotonic`` fails when the gradient is wrong
or the step stays too large even at 1/16 — ``backtracks`` says how often steps were retried.
(The studio's default jitter shifts the image before each step, so its losses are measured on
slightly different inputs and wobble; the claim is about the recipe without it.)  The results
go on one sheet (a row per photo: the photo, then each preset), written under the studio's
data folder, ``reports/dream-sheet.jpg``.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gdl_studio.core.eval_sheets import eval_photos, labelled, sheet_of
from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.jobs import TaskState

from .compute import PRESETS, DreamConfig, GradientGraph, dream, to_array, to_image

SIDE = 320  # photos are dreamed at this long side (the book: best at 300-400 px)
TOLERANCE = 1e-6  # float32 noise allowed between steps when calling a loss "not lower"


def recipe(layers: dict[int, float]) -> DreamConfig:
    weights = np.zeros(16, np.float32)
    for index, value in layers.items():
        weights[index] = value
    return DreamConfig(
        layer_weights=weights,
        class_weights=np.zeros(1000, np.float32),
        steps=20,
        step_size=0.01,
        octaves=3,
        octave_scale=1.4,
        max_loss=10.0,
        jitter=0,
    )


def evaluate(ctx: PluginContext, data: Path | None = None) -> dict[str, Any]:
    if ctx.model is None:
        raise JobError("the dream plugin has no model to evaluate")
    graph = GradientGraph(ctx)
    state = TaskState()
    rows: list[list[Image.Image]] = []
    per_preset: dict[str, dict[str, Any]] = {}
    monotonic = True
    t0 = time.perf_counter()
    photos = eval_photos(data, SIDE, "eval dream")
    cell = (SIDE, max(round(SIDE * p.height / p.width) for _, p in photos))
    for name, photo in photos:
        row = [labelled(photo, name, cell)]
        for preset, layers in PRESETS.items():
            losses: list[list[float]] = []
            backtracks = 0
            image = to_array(photo)
            for step in dream(graph, to_array(photo), recipe(layers), state):
                image = step.image
                if step.octave_done:
                    continue
                if step.rejected:
                    backtracks += 1
                    continue
                while len(losses) <= step.octave:
                    losses.append([])
                losses[step.octave].append(step.loss)
            rises = all(
                all(b >= a - TOLERANCE * max(1.0, abs(a)) for a, b in itertools.pairwise(o))
                for o in losses
            )
            monotonic &= rises
            stats = per_preset.setdefault(preset, {"monotonic": True, "gain": [], "backtracks": 0})
            stats["monotonic"] &= rises
            stats["backtracks"] += backtracks
            stats["gain"].append(float(np.mean([o[-1] - o[0] for o in losses])))
            row.append(labelled(to_image(image), preset, cell))
        rows.append(row)
    out = sheet_of(rows, ctx.studio.paths.reports / "dream-sheet.jpg")
    return {
        "monotonic": monotonic,
        "sheet": str(out),
        "photos": [name for name, _ in photos],
        "presets": {
            name: {
                "monotonic": s["monotonic"],
                "mean_octave_gain": round(float(np.mean(s["gain"])), 4),
                "backtracks": s["backtracks"],
            }
            for name, s in per_preset.items()
        },
        "recipe": "Chollet: 3 octaves x 20 steps, scale 1.4, step 0.01, max loss 10, no jitter",
        "side": SIDE,
        "seconds": round(time.perf_counter() - t0, 1),
    }
