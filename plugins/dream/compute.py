"""DeepDream (Chollet's recipe) around the gradient graph: octaves, jitter, gradient
normalisation, the max-loss stop and re-injection of the detail lost by downscaling.
numpy + ONNX Runtime only; the graph (train/graph.py) returns the loss and d(loss)/d(image).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.imageio import open_image
from gdl_studio.core.jobs import Cancelled, TaskState
from gdl_studio.core.results import Preview, Result
from gdl_studio.core.sample_photos import sample_photo

N_LAYERS = 16
N_CLASSES = 1000
STRIDE = 32  # the graph takes sides that are multiples of this ...
MIN_GRAPH_SIDE = 160  # ... and at least this (5 cells at 1/32, the border left out)
MIN_OCTAVE_SIDE = 48  # a smaller octave is upscaled first (the layers see nothing below it)
MAX_HALVINGS = 4  # a step that lowers the loss is retried at 1/2, 1/4 ... 1/16 of its size

# Weights per block (0 = shallowest).  "swirls and eyes" is the mix found in a trial of
# Chollet's recipe on this network (issue 8); the others were picked on the sample photos
# (``gdl-studio eval dream`` draws them all on a sheet).
PRESETS: dict[str, dict[int, float]] = {
    "swirls and eyes": {4: 0.2, 7: 3.0, 9: 2.0, 10: 1.5},
    "mosaic": {2: 1.0, 3: 1.0, 4: 0.5},
    "fur and feathers": {6: 1.0, 8: 2.0, 10: 1.0},
    "creatures": {10: 1.0, 11: 2.0, 12: 1.0},
}
PRESET_NAMES = (*PRESETS, "random", "custom", "class")


@dataclass(frozen=True)
class DreamConfig:
    """One dream: the octave loop's settings and what the loss weights."""

    layer_weights: np.ndarray  # (N_LAYERS,)
    class_weights: np.ndarray  # (N_CLASSES,)
    steps: int = 20
    step_size: float = 0.01
    octaves: int = 3
    octave_scale: float = 1.4
    max_loss: float = 10.0
    jitter: int = 16
    seed: int = 0

    def min_side(self, strides: Sequence[int]) -> int:
        """The smallest octave side at which every weighted layer still has cells to see."""
        used = [s for s, w in zip(strides, self.layer_weights, strict=True) if w != 0]
        return max(MIN_OCTAVE_SIDE, max(used, default=STRIDE) * 2)


def parse_layers(text: str) -> dict[int, float]:
    """'4:0.2, 7:3' -> {4: 0.2, 7: 3.0}; a bare block number weighs 1."""
    out: dict[int, float] = {}
    for part in re.split(r"[,;\s]+", text.strip()):
        if not part:
            continue
        block, _, weight = part.partition(":")
        try:
            index, value = int(block), float(weight) if weight else 1.0
        except ValueError:
            raise JobError(f"layers: {part!r} is not BLOCK:WEIGHT (e.g. '4:0.2, 7:3')") from None
        if not 0 <= index < N_LAYERS:
            raise JobError(f"layers: block {index} does not exist (0 to {N_LAYERS - 1})")
        if not np.isfinite(value):
            raise JobError(f"layers: weight {weight!r} of block {index} is not a number")
        out[index] = value
    return out


def format_layers(weights: dict[int, float]) -> str:
    return ", ".join(f"{k}:{v:g}" for k, v in sorted(weights.items()))


def random_layers(seed: int) -> dict[int, float]:
    """Chollet's tip: random layer contributions are a quick way to explore.  Two to four of
    the middle blocks (the first give noise, the last barely change the image)."""
    rng = np.random.default_rng([seed, 8])
    blocks = rng.choice(np.arange(2, 14), size=int(rng.integers(2, 5)), replace=False)
    return {int(b): round(float(rng.uniform(0.2, 3.0)), 2) for b in sorted(blocks)}


# ------------------------------------------------------------------------ image helpers


def to_array(image: Image.Image) -> np.ndarray:
    """RGB image -> (H, W, 3) float32 in [-1, 1], the network's input range."""
    return np.asarray(image.convert("RGB"), np.float32) / 127.5 - 1.0


def to_image(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip((array + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8), "RGB")


def resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of an (H, W, C) float array to ``size`` = (height, width), per channel
    in Pillow's 32-bit float mode (no rounding to 8 bits between octaves)."""
    h, w = size
    if array.shape[:2] == (h, w):
        return array.copy()
    channels = [
        np.asarray(Image.fromarray(array[:, :, c], "F").resize((w, h), Image.Resampling.BICUBIC))
        for c in range(array.shape[2])
    ]
    return np.stack(channels, axis=2)


def octave_shapes(shape: tuple[int, int], octaves: int, scale: float) -> list[tuple[int, int]]:
    """Smallest first, ending at ``shape``: shape / scale**i for i = octaves-1 .. 0."""
    h, w = shape
    return [
        (max(1, round(h / scale**i)), max(1, round(w / scale**i)))
        for i in range(octaves - 1, -1, -1)
    ]


def padded_size(side: int) -> int:
    """The side the graph sees: at least MIN_GRAPH_SIDE, a multiple of STRIDE."""
    return max(MIN_GRAPH_SIDE, -(-side // STRIDE) * STRIDE)


# ------------------------------------------------------------------------ the gradient


class GradientGraph:
    """The model's graph: loss and d(loss)/d(image) for an (H, W, 3) image of any size.

    See :func:`mirrored_call` for how any size and the jitter (a random roll, so that the
    network's grid does not print itself on the dream) are handled."""

    def __init__(self, ctx: PluginContext) -> None:
        self.session = ctx.session()
        extras = dict(ctx.model.extras) if ctx.model else {}
        self.strides: list[int] = [int(s) for s in extras.get("layer_strides", [])]
        self.classes: list[str] = [str(c) for c in extras.get("classes", [])]
        if len(self.strides) != N_LAYERS or len(self.classes) != N_CLASSES:
            raise JobError("the dream model's manifest lacks layer_strides or classes")

    def __call__(
        self, image: np.ndarray, config: DreamConfig, shift: tuple[int, int], state: TaskState
    ) -> tuple[float, np.ndarray]:
        def run(x: np.ndarray) -> tuple[float, np.ndarray]:
            feeds = {
                "image": x,
                "layer_weights": config.layer_weights.astype(np.float32),
                "class_weights": config.class_weights.astype(np.float32),
            }
            loss, grad = self.session.run(feeds, ["loss", "grad"], state=state)
            return float(loss), np.asarray(grad)

        return mirrored_call(image, shift, run)


def mirrored_call(
    image: np.ndarray,
    shift: tuple[int, int],
    graph: Callable[[np.ndarray], tuple[float, np.ndarray]],
) -> tuple[float, np.ndarray]:
    """``graph`` (an NCHW image of sides the graph takes -> loss, NCHW gradient) applied to an
    (H, W, 3) image of any size: mirrored out to multiples of 32 (at least 160), rolled by
    ``shift``; the gradient is rolled back and the margin's gradient added onto the pixels it
    mirrors (the adjoint of the padding), so the step follows the true gradient of the loss
    as a function of the image — where the margin is large (small octaves) the cropped
    gradient alone can point downhill."""
    h, w, _ = image.shape
    rows = np.pad(np.arange(h), (0, padded_size(h) - h), mode="symmetric")
    cols = np.pad(np.arange(w), (0, padded_size(w) - w), mode="symmetric")
    x = np.roll(image[rows][:, cols], shift, axis=(0, 1))
    loss, grad = graph(np.ascontiguousarray(x.transpose(2, 0, 1)[None], np.float32))
    g = np.roll(grad[0].transpose(1, 2, 0), (-shift[0], -shift[1]), axis=(0, 1))
    by_row = np.zeros((h, g.shape[1], 3), np.float32)
    np.add.at(by_row, rows, g)
    out = np.zeros((h, w, 3), np.float32)
    np.add.at(out, (slice(None), cols), by_row)
    return loss, out


# ------------------------------------------------------------------------ the octave loop


@dataclass
class Step:
    """What one gradient step reports: where it is, the loss before it, the image after."""

    octave: int
    step: int
    loss: float
    image: np.ndarray
    stopped: bool = False  # the loss passed max_loss: this octave ends here
    octave_done: bool = False  # the octave's image with the lost detail added back
    rejected: bool = False  # the loss fell: the step was taken back to retry at half size


@dataclass
class Dream:
    """The state of a dream, kept so that a cancelled one still has its image."""

    image: np.ndarray
    losses: list[list[float]] = field(default_factory=list)  # per octave, before each step
    octave_images: list[np.ndarray] = field(default_factory=list)
    shape: tuple[int, int] = (0, 0)


def gradient_ascent(
    graph: GradientGraph,
    image: np.ndarray,
    config: DreamConfig,
    octave: int,
    rng: np.random.Generator,
    state: TaskState,
) -> Iterator[Step]:
    """Chollet's loop: normalise the gradient by its mean absolute value, step, stop once the
    loss passes max_loss (beyond it the image turns to artefacts).

    Without jitter, a step after which the loss is lower than before is taken back and
    retried at half the size (up to MAX_HALVINGS times; a backtracking line search): near the
    top of an octave the fixed-size normalised step overshoots.  With jitter each loss is
    measured at another shift, so losses cannot be compared and every step is kept."""
    step_size = config.step_size
    last: tuple[float, np.ndarray, np.ndarray] | None = None  # loss, image, step direction
    halvings = 0
    for i in range(config.steps):
        shift = (0, 0)
        if config.jitter:
            shift = (int(rng.integers(-config.jitter, config.jitter + 1)),
                     int(rng.integers(-config.jitter, config.jitter + 1)))  # fmt: skip
        loss, grad = graph(image, config, shift, state)
        if not np.isfinite(loss):
            raise JobError("the loss is not a number: lower the layer or class weights")
        if not config.jitter and last is not None and loss < last[0] and halvings < MAX_HALVINGS:
            halvings += 1
            step_size /= 2
            image = last[1] + step_size * last[2]
            yield Step(octave, i, loss, image, rejected=True)
            continue
        halvings, step_size = 0, config.step_size
        if config.max_loss and loss > config.max_loss:
            yield Step(octave, i, loss, image, stopped=True)
            return
        grad /= max(float(np.mean(np.abs(grad))), 1e-7)
        last = (loss, image, grad)
        image = image + step_size * grad
        yield Step(octave, i, loss, image)


def dream(
    graph: GradientGraph, original: np.ndarray, config: DreamConfig, state: TaskState
) -> Iterator[Step]:
    """The octave loop, smallest scale first; after each octave the detail that downscaling
    took from the original is added back (resize(original) - resize(shrunk original))."""
    rng = np.random.default_rng([config.seed, 88])
    shapes = octave_shapes(original.shape[:2], config.octaves, config.octave_scale)
    shrunk_original = resize(original, shapes[0])
    image = shrunk_original.copy()
    for octave, shape in enumerate(shapes):
        image = resize(image, shape)
        for step in gradient_ascent(graph, image, config, octave, rng, state):
            image = step.image
            yield step
        upscaled_shrunk = resize(shrunk_original, shape)
        same_size_original = resize(original, shape)
        image = np.clip(image + same_size_original - upscaled_shrunk, -1.0, 1.0)
        shrunk_original = same_size_original
        yield Step(octave, config.steps, float("nan"), image, octave_done=True)


# ------------------------------------------------------------------------ the plugin


def config_for(params: dict[str, Any], graph: GradientGraph) -> tuple[DreamConfig, str]:
    """The DreamConfig of the panel's parameters, and the layer weights as text."""
    preset = params["preset"]
    layers: dict[int, float] = {}
    classes = np.zeros(N_CLASSES, np.float32)
    if preset in PRESETS:
        layers = PRESETS[preset]
    elif preset == "random":
        layers = random_layers(params["seed"])
    elif preset == "custom":
        layers = parse_layers(params["layers"])
        if not layers:
            raise JobError("custom: give layer weights, e.g. '4:0.2, 7:3, 9:2, 10:1.5'")
    elif preset == "class":
        name = params["dream_class"]
        if name not in graph.classes:
            raise JobError(f"class {name!r}: choose one of the ImageNet classes (Class)")
        classes[graph.classes.index(name)] = params["class_weight"]
    else:
        raise JobError(f"unknown preset {preset!r}")
    weights = np.zeros(N_LAYERS, np.float32)
    for index, value in layers.items():
        weights[index] = value
    config = DreamConfig(
        layer_weights=weights,
        class_weights=classes,
        steps=params["steps"],
        step_size=params["step_size"],
        octaves=params["octaves"],
        octave_scale=params["octave_scale"],
        max_loss=params["max_loss"],
        jitter=params["jitter"],
        seed=params["seed"],
    )
    return config, format_layers(layers)


def load_photo(params: dict[str, Any], state: TaskState) -> tuple[Image.Image, str]:
    """The photo to dream on, at the working size: the user's, or a sample photo."""
    if params["image"]:
        path = Path(params["image"])
        photo = open_image(path, "RGB")
        name = path.name
    else:
        try:
            sample = sample_photo(params["sample"])
        except ValueError as exc:
            raise JobError(str(exc)) from None
        photo, name = open_image(sample, "RGB"), sample.name
        state.notice(f"no photo given: dreaming on the sample photo {name}")
    if min(photo.size) < 8:
        raise JobError(f"{name}: {photo.width}x{photo.height} is too small to dream on")
    size = params["size"]
    if size and max(photo.size) > size:
        scale = size / max(photo.size)
        new = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
        photo = photo.resize(new, Image.Resampling.LANCZOS)
    return photo, name


def run(params: dict[str, Any], ctx: PluginContext, state: TaskState) -> Iterator[Any]:
    graph = GradientGraph(ctx)
    config, layer_text = config_for(params, graph)
    photo, name = load_photo(params, state)
    shapes = octave_shapes((photo.height, photo.width), config.octaves, config.octave_scale)
    smallest = min(shapes[0])
    need = config.min_side(graph.strides)
    if smallest < need:
        factor = need / smallest
        before = f"{photo.width}x{photo.height}"
        photo = photo.resize(
            (round(photo.width * factor), round(photo.height * factor)), Image.Resampling.LANCZOS
        )
        state.notice(
            f"{name}: upscaled from {before} to {photo.width}x{photo.height}: the chosen layers "
            f"need at least {need} px at the smallest octave"
        )
    original = to_array(photo)
    total = config.octaves * config.steps
    done = Dream(image=original, shape=original.shape[:2])
    try:
        for step in dream(graph, original, config, state):
            done.image = step.image
            if step.octave_done:
                done.octave_images.append(step.image)
                continue
            while len(done.losses) <= step.octave:
                done.losses.append([])
            if not step.rejected:
                done.losses[step.octave].append(round(step.loss, 5))
            count = step.octave * config.steps + step.step + 1
            message = (
                f"octave {step.octave + 1}/{config.octaves}, step {step.step + 1}: "
                f"loss {step.loss:.3f}"
            )
            if step.stopped:
                message += f" > max loss {config.max_loss:g}, next octave"
            elif step.rejected:
                message += ": lower than before, retrying with half the step"
            state.progress(count / total, message)
            if state.wants_previews:  # every step: converting costs ~1% of a step
                yield Preview("image", images=[to_image(step.image)])
    except Cancelled:
        # Cancel keeps the dream so far (see gdl_studio.core.host.run_job).
        yield result_for(params, done, layer_text, name, photo.size, stopped="cancelled")
        return
    yield result_for(params, done, layer_text, name, photo.size)


def result_for(
    params: dict[str, Any],
    done: Dream,
    layer_text: str,
    name: str,
    size: tuple[int, int],
    stopped: str = "",
) -> Result:
    final = to_image(resize(done.image, (size[1], size[0])))
    images = [final]
    if params["save_octaves"] and done.octave_images:
        images = [to_image(resize(o, (size[1], size[0]))) for o in done.octave_images[:-1]]
        images.append(final)
    extra: dict[str, Any] = {
        "source": name,
        "layers": layer_text,
        "losses": done.losses,
        "octaves_done": len(done.octave_images),
    }
    if stopped:
        extra["stopped"] = stopped
    custom = {"preset": "custom", "layers": layer_text} if layer_text else None
    if custom:
        extra["cell_actions"] = [
            {"label": "Keep these layer weights (custom)", "params": [custom] * len(images),
             "run": False},
        ]  # fmt: skip
    return Result.image(images, columns=len(images), **extra)
