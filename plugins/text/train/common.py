"""What the training scripts share: one-line errors, devices and torch.distributed, atomic
checkpoints and RNG states.

Kept apart from the GAN plugin's helpers on purpose: a plugin (and its training code) must
install and run without any other plugin."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import torch
import torch.distributed as dist


class TrainError(Exception):
    """A problem the user can fix (bad option, unusable data): shown as one line."""


def fail(prog: str, message: str, code: int = 2) -> NoReturn:
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def command_line(module: str, argv: Sequence[str], local_world: int = 1) -> str:
    """The command that started this run, as a user would type it again."""
    head = f"python -m {module}"
    if local_world > 1:
        head = f"torchrun --nproc_per_node {local_world} -m {module}"
    return " ".join([head, shlex.join(list(argv))]).strip()


@dataclass
class Dist:
    """This process's rank among ``world`` processes, and its torch device."""

    rank: int = 0
    world: int = 1
    local_world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """Only the main process writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(device: str = "auto", threads: int | None = None) -> Dist:
    """Join the process group when torchrun set RANK/WORLD_SIZE (gloo on the CPU, nccl on
    CUDA) and choose the device and the CPU thread count."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise TrainError("--device cuda: no CUDA device is available")
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    elif device == "cpu":
        dev = torch.device("cpu")
    else:
        raise TrainError(f"unknown device {device!r} (auto, cpu, cuda)")
    if threads:
        torch.set_num_threads(threads)
    elif local_world > 1 and dev.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        # Processes sharing a machine would otherwise each start one thread per core.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, local_world, dev)


def teardown(d: Dist) -> None:
    if d.distributed and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flag: bool, d: Dist) -> bool:
    """True on every rank when ``flag`` is true on any (all ranks stop at the same step)."""
    if not d.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_sum(values: Sequence[float], d: Dist) -> list[float]:
    """Element-wise sums over the ranks (float64, so long validation sums stay exact)."""
    t = torch.tensor(list(values), dtype=torch.float64, device=d.device)
    if d.distributed:
        dist.all_reduce(t)
    return [float(v) for v in t.tolist()]


def gather_rows(t: torch.Tensor, d: Dist, dim: int) -> torch.Tensor:
    """Every rank's ``t`` concatenated along ``dim`` in rank order (the carried LSTM state of
    each rank's streams -> the state of all streams)."""
    if not d.distributed:
        return t.detach().cpu()
    parts = [torch.empty_like(t) for _ in range(d.world)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat([p.detach().cpu() for p in parts], dim=dim)


def gather_objects(obj: Any, d: Dist) -> list[Any]:
    if not d.distributed:
        return [obj]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks between steps, so an interrupted run
    saves a checkpoint at a step boundary; a second Ctrl+C stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopFlag:
        for s in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread (a test helper)
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary name, fsync, rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
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
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
