"""The VAE latent explorer: latent maps, encoding, morphs and concept vectors, from an encoder
and a decoder graph.  numpy + ONNX Runtime only (the map widget in ``widgets.py`` uses
:class:`VaeModel` and the map geometry below for its live decoding).

Map coordinates ``(u, v)`` are in standard-normal units of the training set's encodings: the
export stores in the model's ``extras.projection`` the mean of the posterior means and two
axes — a 2-D latent's own axes, or for a larger latent the two main axes of the means (PCA) —
each with the spread of the means along it.  The grid covers the Gaussian quantiles ``edge``
.. ``1 - edge`` of each axis (0.05 .. 0.95 by default, the books' 15x15 figure) of where the
data lies, which is where the decoder has learnt something; a trained VAE matches its N(0, I)
prior only roughly.  A 2-D model without a projection uses its latent as it is.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from gdl_studio.core.datasets import DatasetError, ImageSet
from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.image_eval import to_input, to_uint8
from gdl_studio.core.imageio import open_image
from gdl_studio.core.jobs import TaskState
from gdl_studio.core.params import SEED_MAX
from gdl_studio.core.results import Preview, Result

from . import data as vae_data

CHUNK = 64  # decoder images per call: previews appear as chunks finish
CONCEPT_PER_CLASS = 500  # images of each class averaged for a class concept vector
_NORMAL = NormalDist()
_Q_LIMIT = 1e-4  # quantiles are kept inside (1e-4, 1 - 1e-4): |u| <= 3.7


# ------------------------------------------------------------------------------ geometry


@dataclass(frozen=True)
class Projection:
    """The map plane in latent space: ``z = center + (uv * scale) @ axes``.

    ``axes`` has orthonormal rows, so ``project`` (the orthogonal projection onto the plane,
    in map units) undoes ``lift`` exactly."""

    center: np.ndarray  # (d,)
    axes: np.ndarray  # (2, d)
    scale: np.ndarray  # (2,)

    @classmethod
    def identity(cls) -> Projection:
        return cls(np.zeros(2), np.eye(2), np.ones(2))

    @classmethod
    def from_extras(cls, extras: dict[str, Any], latent: int) -> Projection:
        raw = extras.get("projection")
        if raw is None:
            if latent != 2:
                raise JobError(
                    f"the model's latent has {latent} dimensions: its extras need a "
                    "'projection' (center, axes, scale) for the 2-D map"
                )
            return cls.identity()
        try:
            center = np.asarray(raw["center"], np.float64)
            axes = np.asarray(raw["axes"], np.float64)
            scale = np.asarray(raw["scale"], np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise JobError(f"the model's projection is malformed ({exc})") from None
        if center.shape != (latent,) or axes.shape != (2, latent) or scale.shape != (2,):
            raise JobError(f"the model's projection does not fit its {latent}-D latent")
        if not (np.all(np.isfinite(axes)) and np.all(scale > 0)):
            raise JobError("the model's projection has unusable axes or scales")
        return cls(center, axes, scale)

    def lift(self, uv: np.ndarray) -> np.ndarray:
        """Map points (N, 2) -> latents (N, d)."""
        return self.center + (np.asarray(uv, np.float64) * self.scale) @ self.axes

    def project(self, z: np.ndarray) -> np.ndarray:
        """Latents (N, d) -> map points (N, 2)."""
        return ((np.asarray(z, np.float64) - self.center) @ self.axes.T) / self.scale


def axis_values(n: int, edge: float) -> np.ndarray:
    """The n map coordinates of one axis: Gaussian quantiles from ``edge`` to ``1 - edge``."""
    qs = np.linspace(edge, 1.0 - edge, n) if n > 1 else np.array([0.5])
    return np.array([_NORMAL.inv_cdf(float(q)) for q in qs])


def map_points(n: int, edge: float) -> np.ndarray:
    """The (n*n, 2) map points of an n x n grid, row by row from the top: u grows to the
    right, v grows upwards (the top row has the largest v), as in the books' figure."""
    ax = axis_values(n, edge)
    return np.array([(u, v) for v in ax[::-1] for u in ax])


def point_at(fx: float, fy: float, n: int, edge: float) -> tuple[float, float]:
    """The map point under a position given as fractions (0..1) of the grid's width and
    height; the centre of a cell gives exactly that cell's point, in between is smooth."""

    def coord(f: float) -> float:
        if n <= 1:
            return 0.5
        cell = f * n - 0.5  # continuous cell index, 0 at the first cell's centre
        return edge + cell / (n - 1) * (1.0 - 2.0 * edge)

    qu = min(max(coord(fx), _Q_LIMIT), 1 - _Q_LIMIT)
    qv = min(max(1.0 - coord(fy), _Q_LIMIT), 1 - _Q_LIMIT)
    return _NORMAL.inv_cdf(qu), _NORMAL.inv_cdf(qv)


def fraction_of(u: float, v: float, n: int, edge: float) -> tuple[float, float]:
    """Where map point (u, v) lies on the grid, as fractions of its width and height (the
    inverse of :func:`point_at`; may fall outside 0..1 for points beyond the quantiles)."""

    def frac(q: float) -> float:
        if n <= 1:
            return 0.5
        cell = (q - edge) / (1.0 - 2.0 * edge) * (n - 1)
        return (cell + 0.5) / n

    return frac(_NORMAL.cdf(u)), frac(1.0 - _NORMAL.cdf(v))


def format_point(uv: np.ndarray | tuple[float, float]) -> str:
    return f"{float(uv[0]):.6g}, {float(uv[1]):.6g}"


# --------------------------------------------------------------------------------- model


class VaeModel:
    """The encoder and decoder graphs of the chosen model and its map plane."""

    def __init__(self, ctx: PluginContext) -> None:
        self.encoder = ctx.session("encoder")
        self.decoder = ctx.session("decoder")
        self.extras: dict[str, Any] = dict(ctx.model.extras) if ctx.model else {}
        shape = self.encoder.input_shapes["image"]
        self.channels, self.size = int(shape[1]), int(shape[2])
        self.latent = int(self.decoder.input_shapes["z"][1])
        self.projection = Projection.from_extras(self.extras, self.latent)
        self.classes: list[str] = [str(c) for c in self.extras.get("classes", [])]

    @property
    def mode(self) -> str:
        """The PIL mode of the model's images."""
        return "L" if self.channels == 1 else "RGB"

    def encode(
        self, images: np.ndarray, state: TaskState | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images (N, H, W[, C]) -> posterior means and log-variances (N, d)."""
        means, logvars = [], []
        for start in range(0, len(images), 256):
            x = to_input(images[start : start + 256])
            mean, logvar = self.encoder.run({"image": x}, ["mean", "logvar"], state=state)
            means.append(np.asarray(mean, np.float64))
            logvars.append(np.asarray(logvar, np.float64))
        return np.concatenate(means), np.concatenate(logvars)

    def decode(self, z: np.ndarray, state: TaskState | None = None) -> np.ndarray:
        """Latents (N, d) -> the decoder's image (location) outputs, float NCHW, unclipped."""
        (x,) = self.decoder.run({"z": np.asarray(z, np.float32)}, ["image"], state=state)
        return np.asarray(x)

    def decode_full(
        self, z: np.ndarray, state: TaskState | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Latents -> (location, log-scale) of the per-pixel logistic, for the ELBO."""
        loc, log_scale = self.decoder.run(
            {"z": np.asarray(z, np.float32)}, ["image", "log_scale"], state=state
        )
        return np.asarray(loc), np.asarray(log_scale)

    def images(self, z: np.ndarray, state: TaskState | None = None) -> list[Image.Image]:
        return to_pil(self.decode(z, state), self.mode)

    def prepare(self, image: Image.Image) -> np.ndarray:
        """Any image -> uint8 (H, W[, C]) as the encoder takes it: the model's mode,
        centre-cropped and resized to its size (as its training images were)."""
        im = image.convert(self.mode)
        if im.size != (self.size, self.size):
            im = ImageOps.fit(im, (self.size, self.size), Image.Resampling.LANCZOS)
        return np.asarray(im, np.uint8)


def to_pil(batch: np.ndarray, mode: str) -> list[Image.Image]:
    arr = to_uint8(batch)
    return [Image.fromarray(a, mode) for a in arr]


def decode_in_chunks(
    model: VaeModel, z: np.ndarray, state: TaskState, what: str = "images"
) -> Iterator[list[Image.Image]]:
    """Decoded images of ``z`` in chunks; yields the images so far after each chunk."""
    images: list[Image.Image] = []
    for start in range(0, len(z), CHUNK):
        images += model.images(z[start : start + CHUNK], state)
        state.progress(len(images) / len(z), f"{len(images)}/{len(z)} {what}")
        yield images


# ------------------------------------------------------------------------ data and points


_cache: dict[tuple[str, str, int], ImageSet] = {}


def training_set(model: VaeModel, data: str, purpose: str) -> ImageSet:
    """The model's training split (kept for the next call: a concept needs it again)."""
    name = str(model.extras.get("dataset", "folder"))
    path = data.strip() or None
    key = (name, path or "", model.size)
    if key not in _cache:
        try:
            found = vae_data.load(name, "train", path, model.size)
        except DatasetError as exc:
            raise JobError(f"{purpose} needs the training data: {exc}") from None
        _cache.clear()
        _cache[key] = found
    return _cache[key]


def parse_items(text: str) -> list[int]:
    """ "3 17, 22" -> [3, 17, 22] (training image numbers; # signs are allowed)."""
    out = []
    for part in text.replace(",", " ").split():
        try:
            out.append(int(part.lstrip("#")))
        except ValueError:
            raise JobError(f"{part!r} is not an image number") from None
    return out


def dataset_images(model: VaeModel, ids: list[int], data: str, purpose: str) -> np.ndarray:
    train = training_set(model, data, purpose)
    bad = [i for i in ids if not 0 <= i < len(train)]
    if bad:
        raise JobError(f"training image {bad[0]} does not exist (0 to {len(train) - 1})")
    return np.stack([_as_mode(train.images[i], model) for i in ids])


def _as_mode(image: np.ndarray, model: VaeModel) -> np.ndarray:
    if model.channels == 1 and image.ndim == 3:
        return np.asarray(Image.fromarray(image).convert("L"))
    if model.channels == 3 and image.ndim == 2:
        return np.stack([image] * 3, axis=-1)
    return image


def prior_latent(seed: int, dim: int) -> np.ndarray:
    """The prior sample of one seed (the same seed always gives the same image)."""
    return np.random.default_rng(seed).standard_normal(dim)


@dataclass
class Endpoint:
    """A latent chosen by the user, with how it was chosen (for provenance and labels)."""

    z: np.ndarray
    source: str
    image: np.ndarray | None = None  # the input as the encoder saw it, when there was one


def endpoint(
    model: VaeModel,
    image: str | None,
    point: str,
    seed: int,
    data: str,
    state: TaskState,
) -> Endpoint:
    """An image file (encoded: its posterior mean), else ``point`` ("u, v" on the map, "#N"
    for training image N, "seed N" for the prior sample of seed N), else the prior sample of
    ``seed``."""
    if image:
        arr = model.prepare(open_image(Path(image), "RGB" if model.channels == 3 else "L"))
        mean, _ = model.encode(arr[None], state)
        return Endpoint(mean[0], f"image {Path(image).name}", arr)
    text = point.strip()
    if text.startswith("#"):
        (index,) = parse_items(text)
        arr = dataset_images(model, [index], data, "a training image point")[0]
        mean, _ = model.encode(arr[None], state)
        return Endpoint(mean[0], f"training image #{index}", arr)
    if text.lower().startswith("seed"):
        try:
            s = int(text[4:].strip(" =:"))
        except ValueError:
            raise JobError(f"point {text!r}: expected 'seed N'") from None
        return Endpoint(prior_latent(s, model.latent), f"seed {s}")
    if text:
        parts = text.replace(";", ",").split(",")
        try:
            uv = np.array([float(p) for p in parts], np.float64)
        except ValueError:
            uv = np.array([])
        if uv.shape != (2,) or not np.all(np.isfinite(uv)):
            raise JobError(f"point {text!r}: expected 'u, v' (map coordinates), '#N' or 'seed N'")
        return Endpoint(model.projection.lift(uv[None])[0], f"map point ({format_point(uv)})")
    return Endpoint(prior_latent(seed, model.latent), f"seed {seed}")


# ----------------------------------------------------------------------------------- run


def run(params: dict[str, Any], ctx: PluginContext, state: TaskState) -> Iterator[Any]:
    model = VaeModel(ctx)
    mode = params["mode"]
    smooth = params["display"] == "smooth"
    modes = {
        "map": latent_map,
        "sample": sample,
        "encode": encode,
        "morph": morph,
        "concept": concept,
        "examples": examples,
        "point": point,
    }
    result = yield from modes[mode](model, params, state)
    result.extra.setdefault("display_smooth", smooth)
    yield result


def _cell_actions(points: list[str]) -> list[dict[str, Any]]:
    """What the user may do with one image whose latent is ``points[i]`` (see
    gdl_studio.core.cells): keep it alone, morph from or to it, slide it along a concept."""
    keep = [{"mode": "point", "point": p, "image": ""} for p in points]
    start = [{"mode": "morph", "point": p, "image": ""} for p in points]
    end = [{"mode": "morph", "point_b": p, "image_b": ""} for p in points]
    slide = [{"mode": "concept", "point": p, "image": ""} for p in points]
    return [
        {"label": "Keep this image", "params": keep, "run": True},
        {"label": "Start a morph here", "params": start, "run": False},
        {"label": "End the morph here", "params": end, "run": True},
        {"label": "Slide along the concept vector", "params": slide, "run": True},
    ]


def _map_info(
    params: dict[str, Any], points: list[list[float]] | None = None, live: bool = False
) -> dict[str, Any]:
    """Where a result lies on the map: the grid, and its points in map coordinates.  With
    ``live`` the studio shows it on the live map (widgets.py) instead of as plain images."""
    return {"grid": params["grid"], "edge": params["edge"], "points": points or [], "live": live}


def latent_map(model: VaeModel, params: dict[str, Any], state: TaskState) -> Iterator[Any]:
    n, edge = params["grid"], params["edge"]
    uv = map_points(n, edge)
    z = model.projection.lift(uv)
    images: list[Image.Image] = []
    for images in decode_in_chunks(model, z, state):
        if len(images) < len(z):
            yield Preview("image", images=list(images))
    points = [format_point(p) for p in uv]
    return Result.image(
        images,
        columns=n,
        map=_map_info(params, live=True),
        cell_actions=_cell_actions(points),
        projected=model.latent != 2,
    )


def sample(model: VaeModel, params: dict[str, Any], state: TaskState) -> Iterator[Any]:
    seeds = [(params["seed"] + i) % (SEED_MAX + 1) for i in range(params["batch"])]
    z = np.stack([prior_latent(s, model.latent) for s in seeds])
    images: list[Image.Image] = []
    for images in decode_in_chunks(model, z, state):
        if len(images) < len(z):
            yield Preview("image", images=list(images))
    return Result.image(
        images, seeds=seeds, cell_actions=_cell_actions([f"seed {s}" for s in seeds])
    )


def encode(model: VaeModel, params: dict[str, Any], state: TaskState) -> Iterator[Any]:
    if not params["image"]:
        raise JobError("encode needs an image: set Image (or drop one on the window)")
    end = endpoint(model, params["image"], "", params["seed"], params["data"], state)
    assert end.image is not None
    recon = model.decode(end.z[None], state)
    uv = model.projection.project(end.z[None])[0]
    state.progress(0.3, "drawing the map")
    grid = map_image(model, params["grid"], params["edge"], state, marks=[uv])
    original = Image.fromarray(end.image, model.mode)
    shown = [original, to_pil(recon, model.mode)[0]]
    # The input and its reconstruction at the map's size, so the three read side by side.
    shown = [im.resize(grid.size, Image.Resampling.NEAREST).convert("RGB") for im in shown]
    error = float(np.mean((to_uint8(recon)[0] / 255.0 - end.image / 255.0) ** 2))
    yield Preview("image", images=[*shown, grid])
    return Result.image(
        [*shown, grid],
        columns=3,
        map=_map_info(params, [[float(uv[0]), float(uv[1])]], live=True),
        encoded={"point": format_point(uv), "recon_mse": round(error, 6)},
    )


def map_image(
    model: VaeModel,
    n: int,
    edge: float,
    state: TaskState,
    marks: Sequence[np.ndarray] = (),
) -> Image.Image:
    """The n x n map as one RGB image, with a red ring at each of ``marks`` (map points;
    points beyond the grid are drawn at its border, hollow)."""
    from gdl_studio.core.results import grid

    cells = model.images(model.projection.lift(map_points(n, edge)), state)
    sheet = grid(cells, columns=n).convert("RGB")
    draw = ImageDraw.Draw(sheet)
    r = max(3, model.size // 4)
    for uv in marks:
        fx, fy = fraction_of(float(uv[0]), float(uv[1]), n, edge)
        inside = 0 <= fx <= 1 and 0 <= fy <= 1
        x = min(max(fx, 0.0), 1.0) * sheet.width
        y = min(max(fy, 0.0), 1.0) * sheet.height
        draw.ellipse([x - r, y - r, x + r, y + r], outline=(230, 40, 40), width=3)
        if inside:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(230, 40, 40))
    return sheet


def morph(model: VaeModel, params: dict[str, Any], state: TaskState) -> Iterator[Any]:
    seed, data = params["seed"], params["data"]
    a = endpoint(model, params["image"], params["point"], seed, data, state)
    b_seed = (seed + 1) % (SEED_MAX + 1)
    b = endpoint(model, params["image_b"], params["point_b"], b_seed, data, state)
    ts = np.linspace(0.0, 1.0, params["frames"])
    z = np.stack([(1 - t) * a.z + t * b.z for t in ts])
    state.progress(0.3, "decoding")
    images = model.images(z, state)
    uv = model.projection.project(z)
    yield from ()
    return Result.image(
        images,
        columns=len(images),
        map=_map_info(params, uv.tolist()),
        morph={"from": a.source, "to": b.source},
    )


def concept_vector(
    model: VaeModel, params: dict[str, Any], state: TaskState
) -> tuple[np.ndarray, str]:
    """The difference between the mean latents of the images "with" and "without" the
    attribute: marked training images when any are given, else two classes."""
    with_ids, without_ids = parse_items(params["with_items"]), parse_items(params["without_items"])
    data = params["data"]
    if with_ids or without_ids:
        if not with_ids or not without_ids:
            raise JobError(
                "a concept vector needs images with and without the attribute: mark at least "
                "one of each (mode 'examples', then right-click a marked image)"
            )
        with_x = dataset_images(model, with_ids, data, "a concept vector")
        without_x = dataset_images(model, without_ids, data, "a concept vector")
        source = f"{len(with_ids)} marked images with, {len(without_ids)} without"
    else:
        cw, cwo = params["with_class"], params["without_class"]
        if cw == "none" or cwo == "none" or cw == cwo:
            raise JobError(
                "a concept vector needs images with and without the attribute: mark some "
                "(mode 'examples') or choose two different classes"
            )
        train = training_set(model, data, "a class concept vector")
        names = list(train.classes)
        if cw not in names or cwo not in names:
            raise JobError(f"the training data has no class {cw if cw not in names else cwo!r}")
        rng = np.random.default_rng(0)

        def of_class(name: str) -> np.ndarray:
            idx = np.flatnonzero(train.labels == names.index(name))
            pick = rng.choice(idx, min(CONCEPT_PER_CLASS, len(idx)), replace=False)
            return np.stack([_as_mode(train.images[i], model) for i in pick])

        with_x, without_x = of_class(cw), of_class(cwo)
        source = f"class {cw!r} minus class {cwo!r}"
    state.progress(0.2, "encoding the examples")
    with_z, _ = model.encode(with_x, state)
    without_z, _ = model.encode(without_x, state)
    return with_z.mean(0) - without_z.mean(0), source


def concept(model: VaeModel, params: dict[str, Any], state: TaskState) -> Iterator[Any]:
    vector, source = concept_vector(model, params, state)
    base = endpoint(model, params["image"], params["point"], params["seed"], params["data"], state)
    amounts = np.linspace(-params["amount"], params["amount"], params["frames"])
    z = base.z + amounts[:, None] * vector
    state.progress(0.6, "decoding")
    images = model.images(z, state)
    uv = model.projection.project(z)
    yield from ()
    return Result.image(
        images,
        columns=len(images),
        map=_map_info(params, uv.tolist()),
        concept={
            "source": source,
            "base": base.source,
            "norm": round(float(np.linalg.norm(vector)), 4),
            "amounts": [round(float(a), 4) for a in amounts],
        },
    )


def examples(model: VaeModel, params: dict[str, Any], state: TaskState) -> Iterator[Any]:
    """Training images to mark: the marked ones are "with" the attribute, the rest
    "without"; a cell's menu then slides that image along the concept vector they give."""
    train = training_set(model, params["data"], "'examples'")
    rng = np.random.default_rng([params["seed"], 3])
    n = min(params["batch"], len(train))
    ids = sorted(int(i) for i in rng.choice(len(train), n, replace=False))
    images = [Image.fromarray(_as_mode(train.images[i], model), model.mode) for i in ids]
    marks = {"marked": "with_items", "unmarked": "without_items", "ids": [str(i) for i in ids]}
    slide = {
        "label": "Slide this image along the marked concept",
        "params": [{"mode": "concept", "point": f"#{i}", "image": ""} for i in ids],
        "run": True,
        "marks": marks,
    }
    start = [{"mode": "morph", "point": f"#{i}", "image": ""} for i in ids]
    end = [{"mode": "morph", "point_b": f"#{i}", "image_b": ""} for i in ids]
    yield from ()
    return Result.image(
        images,
        items=ids,
        marking={
            "prompt": "Mark the images WITH the attribute (the others count as without), then "
            "right-click an image to slide it along the concept",
            "marked_means": "with",
            "unmarked_means": "without",
        },
        cell_actions=[
            slide,
            {"label": "Start a morph here", "params": start, "run": False},
            {"label": "End the morph here", "params": end, "run": True},
        ],
    )


def point(model: VaeModel, params: dict[str, Any], state: TaskState) -> Iterator[Any]:
    """One image: the decoded map point (what clicking the live map keeps)."""
    end = endpoint(model, params["image"], params["point"], params["seed"], params["data"], state)
    images = model.images(end.z[None], state)
    uv = model.projection.project(end.z[None])[0]
    yield from ()
    return Result.image(images, map=_map_info(params, [uv.tolist()]), source=end.source)
