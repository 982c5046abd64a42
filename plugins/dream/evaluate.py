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
from PIL import Image, ImageDraw, ImageOps

from gdl_studio.core.host import IMAGE_SUFFIXES, JobError, PluginContext
from gdl_studio.core.imageio import InputError, open_image
from gdl_studio.core.jobs import TaskState
from gdl_studio.core.sample_photos import all_sample_photos

from .compute import PRESETS, DreamConfig, GradientGraph, dream, to_array, to_image

SIDE = 320  # photos are dreamed at this long side (the book: best at 300-400 px)
TOLERANCE = 1e-6  # float32 noise allowed between steps when calling a loss "not lower"


def photos_from(data: Path | None) -> list[tuple[str, Image.Image]]:
    if data is None:
        paths = all_sample_photos()
    elif Path(data).is_dir():
        paths = sorted(p for p in Path(data).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        paths = [Path(data)]
    if not paths:
        raise JobError(f"eval dream: no images in {data}")
    out = []
    for path in paths:
        try:
            photo = open_image(path, "RGB")
        except InputError as exc:
            raise JobError(f"eval dream: {exc}") from None
        photo.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
        out.append((path.stem, photo))
    return out


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


def labelled(image: Image.Image, text: str, size: tuple[int, int]) -> Image.Image:
    cell = Image.new("RGB", (size[0], size[1] + 18), "white")
    fitted = ImageOps.contain(image, size, Image.Resampling.LANCZOS)
    cell.paste(fitted, ((size[0] - fitted.width) // 2, 18 + (size[1] - fitted.height) // 2))
    ImageDraw.Draw(cell).text((4, 3), text, fill="black")
    return cell


def evaluate(ctx: PluginContext, data: Path | None = None) -> dict[str, Any]:
    if ctx.model is None:
        raise JobError("the dream plugin has no model to evaluate")
    graph = GradientGraph(ctx)
    state = TaskState()
    rows: list[list[Image.Image]] = []
    per_preset: dict[str, dict[str, Any]] = {}
    monotonic = True
    t0 = time.perf_counter()
    photos = photos_from(data)
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
    width, height = rows[0][0].size
    sheet = Image.new("RGB", (width * len(rows[0]), height * len(rows)), "white")
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            sheet.paste(im, (c * width, r * height))
    out = ctx.studio.paths.reports / "dream-sheet.jpg"
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, quality=90)
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
