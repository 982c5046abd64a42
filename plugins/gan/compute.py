"""Sampling from a GAN generator graph: batches, classes, truncation, latent walks, the
nearest training image of each sample and the "play the discriminator" game.  numpy + ONNX
Runtime only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gdl_studio.core import datasets
from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.image_eval import to_uint8
from gdl_studio.core.jobs import TaskState
from gdl_studio.core.latents import labels_for, slerp
from gdl_studio.core.metrics import nearest_distances
from gdl_studio.core.params import SEED_MAX
from gdl_studio.core.results import Preview, Result

CHUNK = 64  # generator calls per batch: previews appear as chunks finish


class Generator:
    """The generator graph of the chosen model, with what it needs to be fed."""

    def __init__(self, ctx: PluginContext) -> None:
        self.session = ctx.session()
        shape = self.session.input_shapes
        self.latent = int(shape["z"][1])
        self.conditional = "label" in shape
        self.classes: list[str] = list(ctx.model.extras.get("classes", [])) if ctx.model else []

    def __call__(self, z: np.ndarray, labels: np.ndarray | None, state: TaskState) -> np.ndarray:
        feeds: dict[str, np.ndarray] = {"z": z.astype(np.float32)}
        if self.conditional:
            feeds["label"] = (labels if labels is not None else np.zeros(len(z))).astype(np.int64)
        (image,) = self.session.run(feeds, ["image"], state=state)
        return np.asarray(image)


def latent_for(seed: int, dim: int) -> np.ndarray:
    """The latent of one seed: the same seed always gives the same image."""
    return np.random.default_rng(seed).standard_normal(dim)


def to_pil(batch: np.ndarray) -> list[Image.Image]:
    arr = to_uint8(batch)
    mode = "L" if arr.ndim == 3 else "RGB"
    return [Image.fromarray(a, mode) for a in arr]


def generate(gen: Generator, seeds: list[int], labels: np.ndarray | None, psi: float,
             state: TaskState) -> Iterator[list[Image.Image]]:  # fmt: skip
    """Images for ``seeds`` in chunks; yields the images made so far after each chunk."""
    z = np.stack([latent_for(s, gen.latent) for s in seeds]) * psi
    images: list[Image.Image] = []
    for start in range(0, len(seeds), CHUNK):
        stop = start + CHUNK
        part = gen(z[start:stop], None if labels is None else labels[start:stop], state)
        images += to_pil(part)
        state.progress(len(images) / len(seeds), f"{len(images)}/{len(seeds)} images")
        yield images


def run(params: dict[str, Any], ctx: PluginContext, state: TaskState) -> Iterator[Any]:
    gen = Generator(ctx)
    mode = params["mode"]
    smooth = params["display"] == "smooth"
    if mode == "walk":
        yield from walk(gen, params, state, smooth)
        return
    if mode == "guess":
        yield from guess(gen, params, ctx, state, smooth)
        return
    seeds = [(params["seed"] + i) % (SEED_MAX + 1) for i in range(params["batch"])]
    labels = labels_for(params["label"], seeds, gen.classes)
    images: list[Image.Image] = []
    for images in generate(gen, seeds, labels, params["truncation"], state):
        if len(images) < len(seeds):
            yield Preview("image", images=list(images))
    extra: dict[str, Any] = {"seeds": seeds, "display_smooth": smooth}
    if labels is not None:
        extra["labels"] = [gen.classes[i] for i in labels]
    extra["cell_actions"] = actions_for(seeds, extra.get("labels"), params["label"])
    columns = len(gen.classes) if params["label"] == "one of each" and gen.classes else None
    if mode == "nearest":
        images, distances = with_nearest(images, ctx, params["data"], state)
        extra["nearest_distance"] = distances
        # Cells are (sample, training image) pairs: the actions of a pair's sample, twice.
        extra["cell_actions"] = [
            {**a, "params": [p for p in a["params"] for _ in range(2)]}
            for a in extra["cell_actions"]
        ]
        columns = 2
    yield Result.image(images, columns=columns, **extra)


def actions_for(seeds: list[int], labels: list[str] | None, label: str) -> list[dict[str, Any]]:
    """What the user may do with one generated image (see gdl_studio.core.cells): the
    parameters that make it again, alone or as either end of a latent walk."""
    per_cell = [
        {"seed": s, "label": labels[i] if labels else label} for i, s in enumerate(seeds)
    ]  # fmt: skip
    alone = [{**p, "mode": "generate", "batch": 1} for p in per_cell]
    start = [{**p, "mode": "walk"} for p in per_cell]
    end = [{"seed_b": p["seed"], "mode": "walk"} for p in per_cell]
    return [
        {"label": "Make this image alone", "params": alone, "run": True},
        {"label": "Start a latent walk here", "params": start, "run": False},
        {"label": "End the latent walk here", "params": end, "run": True},
    ]


def guess(gen: Generator, params: dict[str, Any], ctx: PluginContext, state: TaskState,
          smooth: bool) -> Iterator[Any]:  # fmt: skip
    """ "Play the discriminator": real training images and generated ones, shuffled; the user
    marks the ones they think were generated and the canvas scores the guesses."""
    n = max(2, params["batch"])
    rng = np.random.default_rng([params["seed"], 2])
    fake = np.zeros(n, bool)
    fake[rng.choice(n, n // 2, replace=False)] = True
    train = training_images(ctx, params["data"], purpose="'guess'")
    state.check()
    seeds = [(params["seed"] + i) % (SEED_MAX + 1) for i in range(int(fake.sum()))]
    labels = labels_for(params["label"], seeds, gen.classes)
    *_, generated = generate(gen, seeds, labels, params["truncation"], state)  # the last chunk
    # Real images of the same classes as the generated ones, so the class gives nothing away.
    pool = np.arange(len(train.images))
    real: list[Image.Image] = []
    mode = generated[0].mode
    for i in range(n - len(seeds)):
        # The generator learnt label k from the dataset's label k: the same index here.
        want = None if labels is None else labels[i % len(labels)]
        choices = pool if want is None else pool[train.labels == want]
        pick = int(rng.choice(choices if len(choices) else pool))
        real.append(Image.fromarray(train.images[pick]).convert(mode))
    gen_iter, real_iter = iter(generated), iter(real)
    images = [next(gen_iter) if f else next(real_iter) for f in fake]
    quiz = {
        "prompt": "Play the discriminator: which images did the generator make?",
        "answer": [bool(f) for f in fake],
        "marked_means": "generated",
        "unmarked_means": "real",
    }
    yield Result.image(images, columns=None, quiz=quiz, display_smooth=smooth)


def walk(gen: Generator, params: dict[str, Any], state: TaskState, smooth: bool) -> Iterator[Any]:
    a = latent_for(params["seed"], gen.latent)
    b = latent_for(params["seed_b"], gen.latent)
    n = params["frames"]
    ts = np.linspace(0.0, 1.0, n)
    mix = slerp if params["interpolation"] == "slerp" else (lambda a, b, t: (1 - t) * a + t * b)
    z = np.stack([mix(a, b, float(t)) for t in ts]) * params["truncation"]
    labels = None
    if gen.conditional:
        first = labels_for(params["label"], [params["seed"]], gen.classes)
        labels = np.full(n, first[0] if first is not None else 0)
    state.progress(0.2, "walking")
    images = to_pil(gen(z, labels, state))
    extra = {"walk": [params["seed"], params["seed_b"]], "display_smooth": smooth}
    yield Result.image(images, columns=n, **extra)


def training_images(ctx: PluginContext, data: str, purpose: str = "'nearest'") -> datasets.ImageSet:
    name = ctx.model.extras.get("dataset", "folder") if ctx.model else "folder"
    path = Path(data).expanduser() if data.strip() else None
    if name == "folder" and path is None:
        raise JobError(f"{purpose} needs the training data: set Training data to its folder")
    size = int(ctx.model.extras.get("size", 0)) or None if ctx.model else None
    try:
        return datasets.load(name, "train", path, size)
    except datasets.DatasetError as exc:
        raise JobError(f"{purpose} needs the training data. {exc}") from exc


def with_nearest(images: list[Image.Image], ctx: PluginContext, data: str,
                 state: TaskState) -> tuple[list[Image.Image], list[float]]:  # fmt: skip
    """Each sample followed by its nearest training image (pixel distance): the "Rule 2" check
    of Foster's first chapter, by eye."""
    state.progress(0.5, "loading the training data")
    train = training_images(ctx, data)
    state.check()
    samples = np.stack([np.asarray(im) for im in images]).astype(np.float32) / 255.0
    state.progress(0.7, "finding nearest training images")
    dist, index = nearest_distances(samples, train.images.astype(np.float32) / 255.0)
    mode = images[0].mode
    out: list[Image.Image] = []
    for im, i in zip(images, index, strict=True):
        out += [im, Image.fromarray(train.images[i], mode)]
    return out, [round(float(d), 4) for d in dist]
