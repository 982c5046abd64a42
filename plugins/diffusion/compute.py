"""Sampling from the diffusion denoiser: generate from noise with a live view of every step,
image-to-image (noise a picture part of the way, denoise it back), inpainting (repaint only
the masked part, the rest re-imposed at every step as in RePaint) and interpolation between
two seeds (spherical interpolation of the starting noise).  numpy + ONNX Runtime only; the
reverse process itself is in :mod:`.samplers`.

Seeds: image i of a batch starts from the noise of seed + i and draws its per-step noise
(DDPM, DDIM with eta > 0, RePaint) from a stream of its own, so any image of a batch can be
made again alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.image_eval import to_uint8
from gdl_studio.core.imageio import InputError, open_image
from gdl_studio.core.jobs import Cancelled, TaskState
from gdl_studio.core.latents import slerp
from gdl_studio.core.params import SEED_MAX
from gdl_studio.core.results import Preview, Result

from . import samplers
from .schedule import Schedule, from_config

ASPECT_TOLERANCE = 0.02  # a mask may be a scaled copy of the image, not another shape


class Denoiser:
    """The chosen model's network and schedule, with classifier-free guidance."""

    def __init__(self, ctx: PluginContext) -> None:
        self.session = ctx.session()
        extras = ctx.model.extras if ctx.model else {}
        self.classes: list[str] = [str(c) for c in extras.get("classes", [])]
        try:
            self.schedule: Schedule = from_config(
                {
                    "kind": extras.get("schedule", "cosine"),
                    "steps": int(extras.get("timesteps", 1000)),
                }
            )
        except ValueError as exc:
            raise JobError(f"the model's schedule: {exc}") from None
        shape = self.session.input_shapes["x"]
        self.channels, self.size = int(shape[1]), int(shape[2])
        self.null = len(self.classes)  # the "no class" label the network was trained with

    def eps_fn(self, labels: np.ndarray, guidance: float, state: TaskState) -> samplers.EpsFn:
        """The noise predictor for a batch with these labels (``null``: no class).  With
        guidance w != 1, eps = eps(no class) + w * (eps(class) - eps(no class)), both in one
        call of twice the batch."""
        labels = labels.astype(np.int64)
        guided = guidance != 1.0 and bool(np.any(labels != self.null))

        def eps(x: np.ndarray, var: np.ndarray) -> np.ndarray:
            if not guided:
                feeds = {"x": x, "noise_variance": var, "label": labels}
                return np.asarray(self.session.run(feeds, ["noise"], state=state)[0])
            nulls = np.full_like(labels, self.null)
            feeds = {
                "x": np.concatenate([x, x]),
                "noise_variance": np.concatenate([var, var]),
                "label": np.concatenate([labels, nulls]),
            }
            out = np.asarray(self.session.run(feeds, ["noise"], state=state)[0])
            cond, uncond = out[: len(x)], out[len(x) :]
            return uncond + guidance * (cond - uncond)

        return eps


class SeedNoise:
    """A stand-in for ``np.random.Generator`` whose ``standard_normal(shape)`` draws image i
    of the batch from its own stream (seed + i): what a sampler's noise gives each image
    does not depend on the rest of the batch."""

    def __init__(self, seeds: list[int]) -> None:
        self.streams = [np.random.default_rng([s, 7]) for s in seeds]

    def standard_normal(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.stack([g.standard_normal(shape[1:]) for g in self.streams])


class BetweenNoise(SeedNoise):
    """The per-step noise of an interpolation: frame k draws from both seeds' streams and
    takes the point ``ts[k]`` of the great circle between the two draws."""

    def __init__(self, seed_a: int, seed_b: int, ts: np.ndarray) -> None:
        super().__init__([seed_a, seed_b])
        self.ts = ts

    def standard_normal(self, shape: tuple[int, ...]) -> np.ndarray:
        a, b = (g.standard_normal(shape[1:]) for g in self.streams)
        return np.stack([slerp(a, b, float(t)) for t in self.ts])


def start_noise(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def to_pil(batch: np.ndarray) -> list[Image.Image]:
    arr = to_uint8(batch)
    mode = "L" if arr.ndim == 3 else "RGB"
    return [Image.fromarray(a, mode) for a in arr]


def labels_for(den: Denoiser, choice: str, n: int) -> np.ndarray:
    """Labels for the class choice: "any" is no class (the whole dataset), "one of each"
    the classes in turn, or a class."""
    if not den.classes or choice == "any":
        return np.full(n, den.null)
    if choice == "one of each":
        return np.arange(n) % len(den.classes)
    if choice not in den.classes:
        raise JobError(f"class {choice!r} is not one of {', '.join(den.classes)}")
    return np.full(n, den.classes.index(choice))


def sampler_for(params: dict[str, Any]) -> samplers.Sampler:
    try:
        return samplers.from_config(
            {"kind": params["sampler"], "steps": params["steps"], "eta": params["eta"]}
        )
    except ValueError as exc:
        raise JobError(str(exc)) from None


def fit_square(image: Image.Image, side: int) -> Image.Image:
    """The centre square of ``image``, resized to ``side``."""
    w, h = image.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return image.resize((side, side), Image.Resampling.LANCZOS, box=box)


def load_input(den: Denoiser, path: str) -> tuple[np.ndarray, Image.Image]:
    """The picture to start from, as a (C, S, S) array in [-1, 1] (its centre square at the
    model's size), and as opened."""
    try:
        picture = open_image(Path(path), "L" if den.channels == 1 else "RGB")
    except InputError as exc:
        raise JobError(str(exc)) from None
    small = np.asarray(fit_square(picture, den.size), np.float32) / 127.5 - 1.0
    arr = small[None] if small.ndim == 2 else small.transpose(2, 0, 1)
    return arr, picture


def load_mask(den: Denoiser, params: dict[str, Any], picture: Image.Image) -> np.ndarray:
    """The mask (white: repaint) as a (1, S, S) array of 0/1 at the model's size.  It must
    have the picture's shape (a scaled copy is fine: the painter saves it at the picture's
    size); anything else is refused rather than stretched."""
    path = params["mask"]
    if not path:
        raise JobError("inpaint: paint a mask (white where the model repaints) or give one")
    try:
        mask = open_image(Path(path), "L")
    except InputError as exc:
        raise JobError(f"mask: {exc}") from None
    (mw, mh), (pw, ph) = mask.size, picture.size
    if abs(mw / mh - pw / ph) > ASPECT_TOLERANCE * (pw / ph):
        raise JobError(
            f"mask: it is {mw}x{mh} but the image is {pw}x{ph}: paint the mask over this image"
        )
    m = np.asarray(fit_square(mask.resize((pw, ph), Image.Resampling.BILINEAR), den.size))
    binary = (m >= 128).astype(np.float64)[None]
    if not binary.any():
        raise JobError("mask: it is all black, so there is nothing to repaint")
    return binary


def sample(
    den: Denoiser,
    params: dict[str, Any],
    state: TaskState,
    seeds: list[int],
    x: np.ndarray | None = None,
    start: int | None = None,
    inpaint: samplers.Inpaint | None = None,
    labels: np.ndarray | None = None,
    noise: SeedNoise | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Run the sampler over the batch of ``seeds`` (from their noise unless ``x`` is given,
    with the per-step noise of their own streams unless ``noise`` is); yields (x_j,
    predicted x0) after every step, with progress."""
    shape = (den.channels, den.size, den.size)
    if x is None:
        x = np.stack([start_noise(s, shape) for s in seeds])
    if labels is None:
        labels = labels_for(den, params["label"], len(seeds))
    sampler = sampler_for(params)
    eps = den.eps_fn(labels, float(params["guidance"]), state)
    total = (
        len(samplers.timesteps(sampler.steps, den.schedule.steps if start is None else start)) - 1
    )
    for k, out in enumerate(
        sampler.run(eps, den.schedule, x, noise or SeedNoise(seeds), start, inpaint)
    ):
        state.progress((k + 1) / max(total, 1), f"step {k + 1}/{total}")
        yield out


def seeds_of(params: dict[str, Any], n: int) -> list[int]:
    return [(params["seed"] + i) % (SEED_MAX + 1) for i in range(n)]


def denoise(
    den: Denoiser,
    params: dict[str, Any],
    state: TaskState,
    seeds: list[int],
    extra: dict[str, Any],
    columns: int | None,
    **kw: Any,
) -> Iterator[Any]:
    """Sample with a preview after every step; Cancel keeps the images as they are."""
    show_x0 = params["preview"] == "prediction"
    current: np.ndarray | None = None
    extra = {**extra, "seeds": seeds, "display_smooth": params["display"] == "smooth"}
    try:
        for xj, x0 in sample(den, params, state, seeds, **kw):
            current = xj
            if state.wants_previews:
                yield Preview("image", images=to_pil(x0 if show_x0 else xj))
    except Cancelled:
        if current is None:
            raise
        yield Result.image(to_pil(current), columns=columns, stopped="cancelled", **extra)
        return
    assert current is not None
    yield Result.image(to_pil(current), columns=columns, **extra)


def run(params: dict[str, Any], ctx: PluginContext, state: TaskState) -> Iterator[Any]:
    den = Denoiser(ctx)
    mode = params["mode"]
    common = {"sampler": params["sampler"], "steps": params["steps"], "eta": params["eta"]}
    if mode == "interpolate":
        yield from interpolate(den, params, state, common)
        return
    if mode in ("img2img", "inpaint"):
        yield from from_picture(den, params, state, common, mode)
        return
    seeds = seeds_of(params, params["batch"])
    labels = labels_for(den, params["label"], len(seeds))
    extra: dict[str, Any] = dict(common)
    names = [den.classes[i] if i < den.null else "any" for i in labels]
    if den.classes:
        extra["labels"] = names
        extra["guidance"] = params["guidance"]
    extra["cell_actions"] = actions_for(seeds, names)
    columns = len(den.classes) if params["label"] == "one of each" and den.classes else None
    yield from denoise(den, params, state, seeds, extra, columns, labels=labels)


def actions_for(seeds: list[int], labels: list[str]) -> list[dict[str, Any]]:
    """What the user may do with one generated image (its own seed and class): make it alone,
    repaint part of it, vary it, or use it as an end of an interpolation (see
    gdl_studio.core.cells)."""
    own = [{"seed": s, "label": lab} for s, lab in zip(seeds, labels, strict=True)]
    return [
        {"label": "Make this image alone",
         "params": [{**p, "mode": "generate", "batch": 1} for p in own], "run": True},
        {"label": "Repaint part of it (paint a mask)",
         "params": [{**p, "mode": "inpaint", "image": "", "batch": 1} for p in own],
         "run": False},
        {"label": "Vary it (image-to-image)",
         "params": [{**p, "mode": "img2img", "image": ""} for p in own], "run": True},
        {"label": "Interpolate from here",
         "params": [{**p, "mode": "interpolate"} for p in own], "run": False},
        {"label": "Interpolate to here",
         "params": [{"seed_b": s, "mode": "interpolate"} for s in seeds], "run": True},
    ]  # fmt: skip


def from_picture(
    den: Denoiser, params: dict[str, Any], state: TaskState, common: dict[str, Any], mode: str
) -> Iterator[Any]:
    """img2img: noise the picture to ``strength`` of the schedule and denoise it back, a
    batch of variations; inpaint: repaint the masked part, the rest kept."""
    picture_arr, picture = yield from _picture(den, params, state, mode)
    seeds = seeds_of(params, params["batch"])
    n = len(seeds)
    known = np.repeat(picture_arr[None].astype(np.float64), n, axis=0)
    source = Path(params["image"]).name if params["image"] else f"seed {params['seed']}"
    extra = {**common, "mode": mode, "source": source}
    if mode == "img2img":
        strength = float(params["strength"])
        start = max(1, round(strength * den.schedule.steps))
        # Fewer steps for a shorter way back: the step size stays what Steps asks for.
        steps = max(1, round(params["steps"] * strength))
        signal, noise = den.schedule.rates(start)
        x = signal * known + noise * np.stack([start_noise(s, known.shape[1:]) for s in seeds])
        extra.update(strength=strength, denoising_steps=steps, start_step=start)
        p = dict(params, steps=steps)
        yield from denoise(den, p, state, seeds, extra, None, x=x, start=start)
        return
    mask = load_mask(den, params, picture)
    inpaint = samplers.Inpaint(known, mask, resample=int(params["resample"]))
    extra["resample"] = inpaint.resample
    yield from denoise(den, params, state, seeds, extra, None, inpaint=inpaint)


def _picture(den: Denoiser, params: dict[str, Any], state: TaskState, mode: str) -> Iterator[Any]:
    """The picture to start from (``load_input``); without one, the sample of the seed made
    with the same settings (the image generate showed for it), so that a generated image can
    be repainted or varied without saving it first.  Its steps are shown too."""
    if params["image"]:
        return load_input(den, params["image"])
    gen = dict(params, mode="generate", batch=1)
    state.notice(f"{mode}: no image given, starting from the sample of seed {params['seed']}")
    final: np.ndarray | None = None
    for xj, x0 in sample(den, gen, state, [params["seed"]]):
        final = xj
        if state.wants_previews:
            yield Preview("image", images=to_pil(x0))
    assert final is not None
    return final[0], to_pil(final)[0]


def interpolate(
    den: Denoiser, params: dict[str, Any], state: TaskState, common: dict[str, Any]
) -> Iterator[Any]:
    """A strip of ``frames`` images whose noise moves on a great circle from the seed's to
    the end seed's: the starting noise and, for a sampler that adds noise (eta > 0, DDPM),
    the noise of every step too, so that the strip changes smoothly whatever the sampler."""
    shape = (den.channels, den.size, den.size)
    a, b = start_noise(params["seed"], shape), start_noise(params["seed_b"], shape)
    n = int(params["frames"])
    ts = np.linspace(0.0, 1.0, n)
    x = np.stack([slerp(a, b, float(t)) for t in ts])
    labels = labels_for(den, params["label"], 1).repeat(n)
    seeds = [params["seed"]] * n
    noise = BetweenNoise(params["seed"], params["seed_b"], ts)
    extra = {**common, "interpolate": [params["seed"], params["seed_b"]]}
    yield from denoise(den, params, state, seeds, extra, n, x=x, labels=labels, noise=noise)
