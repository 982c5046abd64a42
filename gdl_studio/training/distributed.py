"""Where a training process runs (its device, and its rank when torchrun started several)
and the collective operations the trainers use.

Every helper also works in a single process (``Dist.world == 1``), where the collectives do
nothing, so a trainer has one code path for one and for many processes."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from gdl_studio.training.errors import TrainError


@dataclass
class Dist:
    """This process's rank among ``world`` processes (``local_*``: on this machine) and its
    torch device."""

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
        """More than one process: the collectives really communicate."""
        return self.world > 1

    def describe(self) -> str:
        """``N process(es) on DEVICE, T thread(s) each``, as trainers report it at the start."""
        return (
            f"{self.world} process(es) on {self.device}, {torch.get_num_threads()} thread(s) each"
        )


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device for ``--device`` (``auto``: CUDA when there is one, else the CPU);
    under torchrun each process on a machine takes the GPU of its local rank."""
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
    CUDA) and choose the device and the CPU thread count (``--device``, ``--threads``)."""
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
    """Leave the process group that ``setup`` joined (nothing to do in one process)."""
    if d.distributed and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: torch.nn.Module, d: Dist) -> None:
    """Start every rank from rank 0's weights and buffers."""
    if d.distributed:
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def allreduce_grads(params: Iterable[torch.nn.Parameter], d: Dist) -> None:
    """Average gradients across ranks in one flat all-reduce.

    For loops that DistributedDataParallel's bucketed hooks handle badly (as in StyleGAN2-ADA):
    a GAN step runs the discriminator several times per backward, skips generator updates
    under n_critic and differentiates twice for the gradient penalty.  A parameter without a
    gradient gets zeros, so the flat layout is the same on every rank."""
    if not d.distributed:
        return
    ps = [p for p in params if p.requires_grad]
    for p in ps:
        if p.grad is None:  # keep the flat layouts identical on every rank
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in ps if p.grad is not None]  # all of them, now
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= d.world
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def average_buffers(module: torch.nn.Module, d: Dist) -> None:
    """Average float buffers (batch-norm running statistics) across ranks, so that every rank
    holds the same model and a checkpoint's statistics cover all ranks' data."""
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


def all_sum(values: Sequence[float], d: Dist) -> list[float]:
    """Element-wise sums over the ranks (float64, so long validation sums stay exact)."""
    t = torch.tensor(list(values), dtype=torch.float64, device=d.device)
    if d.distributed:
        dist.all_reduce(t)
    return [float(v) for v in t.tolist()]


def gather_rows(t: torch.Tensor, d: Dist, dim: int) -> torch.Tensor:
    """Every rank's ``t`` concatenated along ``dim`` in rank order, on the CPU (e.g. the
    carried recurrent state of each rank's streams -> the state of all streams)."""
    if not d.distributed:
        return t.detach().cpu()
    parts = [torch.empty_like(t) for _ in range(d.world)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat([p.detach().cpu() for p in parts], dim=dim)


def gather_objects(obj: Any, d: Dist) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order."""
    if not d.distributed:
        return [obj]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out
