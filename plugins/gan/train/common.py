"""Helpers the training scripts share: one-line errors, devices and torch.distributed, atomic
checkpoints, RNG states, sample grids and a loss plot drawn with Pillow."""

from __future__ import annotations

import contextlib
import csv
import math
import os
import shlex
import signal
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image, ImageDraw

# ---------------------------------------------------------------------------- errors / output


class TrainError(Exception):
    """A problem the user can fix (bad option, unusable data): shown as one line, no traceback."""


def fail(prog: str, message: str, code: int = 2) -> NoReturn:
    """Print ``prog: error: message`` on stderr and exit with ``code``."""
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def command_line(module: str, argv: Sequence[str], local_world: int = 1) -> str:
    """The command that started this run, as a user would type it again."""
    head = f"python -m {module}"
    if local_world > 1:
        head = f"torchrun --nproc_per_node {local_world} -m {module}"
    return " ".join([head, shlex.join(list(argv))]).strip()


# ---------------------------------------------------------------------- devices / distributed


@dataclass
class Dist:
    """Where this process runs: its rank among ``world`` processes and its torch device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """Only the main process writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise TrainError("--device cuda: no CUDA device is available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise TrainError(f"unknown device {name!r} (auto, cpu, cuda)")
    return torch.device("cpu")


def setup(device: str = "auto", threads: int | None = None) -> Dist:
    """Join the process group when torchrun set RANK/WORLD_SIZE (gloo on the CPU, nccl on
    CUDA) and choose the device and CPU thread count."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    dev = pick_device(device, local_rank)
    if threads:
        torch.set_num_threads(threads)
    elif local_world > 1 and dev.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        # Processes sharing a machine would otherwise each start one thread per core.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank, local_world, dev)


def teardown(d: Dist) -> None:
    if d.distributed and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: torch.nn.Module, d: Dist) -> None:
    """Start every rank from rank 0's weights and buffers."""
    if d.distributed:
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def allreduce_grads(params: Iterable[torch.nn.Parameter], d: Dist) -> None:
    """Average gradients across ranks in one flat all-reduce.

    Done by hand rather than through DistributedDataParallel (as StyleGAN2-ADA does): a GAN
    step runs the discriminator several times per backward, skips generator updates under
    n_critic and differentiates twice for the gradient penalty, all of which the DDP wrapper's
    bucketed hooks handle badly."""
    if not d.distributed:
        return
    ps = [p for p in params if p.requires_grad]
    for p in ps:
        if p.grad is None:  # keep the flat layouts identical on every rank
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in ps])
    dist.all_reduce(flat)
    flat /= d.world
    offset = 0
    for p in ps:
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n


def average_buffers(module: torch.nn.Module, d: Dist) -> None:
    """Average float buffers (batch-norm running statistics) across ranks, so that every rank
    holds the same model and the checkpoint's statistics cover all ranks' data."""
    if not d.distributed:
        return
    for b in module.buffers():
        if b.dtype.is_floating_point:
            dist.all_reduce(b.data)
            b.data /= d.world


def any_rank(flag: bool, d: Dist) -> bool:
    """True on every rank when ``flag`` is true on any (so all ranks stop at the same step)."""
    if not d.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks between steps: an interrupted run
    saves a checkpoint at a step boundary instead of dying half-way through an update."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # a second Ctrl+C: stop at once
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopFlag:
        for s in (signal.SIGINT, signal.SIGTERM):
            # signal() raises ValueError outside the main thread (a test helper, say).
            with contextlib.suppress(ValueError):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


# ------------------------------------------------------------------- checkpoints and RNG


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary name, fsync, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """torch.load with weights_only=True: checkpoints hold tensors and plain Python only."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and weights_only errors all mean "unusable"
        raise TrainError(f"{path}: not a readable checkpoint ({exc.__class__.__name__})") from exc


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's torch RNG states (the loops draw all randomness from torch)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def gather_rng(device: torch.device, d: Dist) -> list[dict[str, Any]]:
    """Every rank's RNG state, in rank order (each rank draws its own noise)."""
    mine = rng_state(device)
    if not d.distributed:
        return [mine]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, {k: v.cpu() for k, v in mine.items()})
    return out


# ---------------------------------------------------------------------------------- images


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> uint8 (N, H, W) or (N, H, W, 3)."""
    a = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    return a[:, 0] if a.shape[1] == 1 else a.transpose(0, 2, 3, 1)


def grid_image(x: torch.Tensor, columns: int, pad: int = 2, scale: int = 2) -> Image.Image:
    """A grid of images in [-1, 1], ``columns`` per row, on a dark background."""
    imgs = to_uint8(x)
    n, h, w = imgs.shape[:3]
    rows = math.ceil(n / columns)
    colour = imgs.ndim == 4
    shape = (rows * (h + pad) + pad, columns * (w + pad) + pad) + ((3,) if colour else ())
    canvas = np.full(shape, 32, np.uint8)
    for i, im in enumerate(imgs):
        r, c = divmod(i, columns)
        y, x0 = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y : y + h, x0 : x0 + w] = im
    out = Image.fromarray(canvas, "RGB" if colour else "L")
    return out.resize((out.width * scale, out.height * scale), Image.Resampling.NEAREST)


def save_png(image: Image.Image, path: Path) -> None:
    """Write a PNG atomically (a viewer polling the folder never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------- loss log


class LossLog:
    """losses.csv (one row per logging interval, means over the interval) and a loss-curve
    PNG redrawn from it."""

    def __init__(self, path: Path, fields: Sequence[str]) -> None:
        self.path = Path(path)
        self.fields = ["step", "epoch", *fields]
        self._sums: dict[str, float] = {}
        self._count = 0

    def truncate_after(self, step: int) -> None:
        """Drop rows past ``step`` (logged after the checkpoint a resumed run starts from)."""
        rows = self.rows()
        if rows and any(int(r["step"]) > step for r in rows):
            self._write_all([r for r in rows if int(r["step"]) <= step])

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self._sums[k] = self._sums.get(k, 0.0) + float(v)
        self._count += 1

    def flush(self, step: int, epoch: float) -> dict[str, float] | None:
        """Append the interval's means as one row; None when nothing was added."""
        if not self._count:
            return None
        means = {k: v / self._count for k, v in self._sums.items()}
        self._sums, self._count = {}, 0
        row = {"step": step, "epoch": round(epoch, 4)}
        row.update({k: round(means.get(k, float("nan")), 6) for k in self.fields[2:]})
        new = not self.path.is_file()
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, self.fields)
            if new:
                w.writeheader()
            w.writerow(row)
        return means

    def rows(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def _write_all(self, rows: list[dict[str, str]]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, self.fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, self.path)

    def plot(self, png: Path, series: Sequence[str]) -> None:
        """Draw ``series`` against step (Pillow only: no matplotlib in the train extra)."""
        save_png(plot_curves(self.rows(), series), png)


COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14))


def plot_curves(
    rows: Sequence[dict[str, str]], series: Sequence[str], size: tuple[int, int] = (720, 400)
) -> Image.Image:
    """A line plot of the named CSV columns against ``step``."""
    w, h = size
    left, right, top, bottom = 64, 16, 28, 36
    im = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(im)
    pts: dict[str, list[tuple[float, float]]] = {}
    for name in series:
        pts[name] = []
        for r in rows:
            try:
                x, y = float(r["step"]), float(r[name])
            except (KeyError, TypeError, ValueError):
                continue
            if math.isfinite(y):
                pts[name].append((x, y))
    xs = [p[0] for v in pts.values() for p in v]
    ys = [p[1] for v in pts.values() for p in v]
    draw.rectangle([left, top, w - right, h - bottom], outline=(0, 0, 0))
    if not xs:
        draw.text((left + 8, top + 8), "no losses logged yet", fill=(0, 0, 0))
        return im
    x0, x1 = min(xs), max(xs)
    # Robust y-range: early spikes would otherwise flatten the rest of the curve.
    y0, y1 = float(np.percentile(ys, 1)), float(np.percentile(ys, 99))
    if x1 == x0:
        x1 = x0 + 1
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 1, y1 + 1
    pad = 0.05 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (w - left - right)

    def sy(y: float) -> float:
        y = min(max(y, y0), y1)
        return h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom)

    if y0 < 0 < y1:
        draw.line([(left, sy(0)), (w - right, sy(0))], fill=(200, 200, 200))
    for i, (name, p) in enumerate(pts.items()):
        colour = COLOURS[i % len(COLOURS)]
        if len(p) > 1:
            draw.line([(sx(x), sy(y)) for x, y in p], fill=colour, width=2)
        elif p:
            draw.ellipse(
                [sx(p[0][0]) - 2, sy(p[0][1]) - 2, sx(p[0][0]) + 2, sy(p[0][1]) + 2], fill=colour
            )
        draw.text((left + 8 + 110 * i, 8), name, fill=colour)
    for y in (y0, y1):
        draw.text((4, sy(y) - 6), f"{y:.3g}", fill=(0, 0, 0))
    draw.text((left, h - bottom + 6), f"{x0:.0f}", fill=(0, 0, 0))
    draw.text((w - right - 60, h - bottom + 6), f"step {x1:.0f}", fill=(0, 0, 0))
    return im
