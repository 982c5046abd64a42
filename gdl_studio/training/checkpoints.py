"""Files a run writes (atomically, so a crash or a reader never sees half a file), its
checkpoints (loaded with ``weights_only``) and the random streams that make ``--resume``
continue a run exactly.

A checkpoint is a dict of tensors and plain Python (no pickled classes): it loads with
``torch.load(weights_only=True)`` and its layout is the trainer's own business."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from gdl_studio.training.cli import say
from gdl_studio.training.distributed import Dist, gather_objects
from gdl_studio.training.errors import TrainError

# ---------------------------------------------------------------------------- atomic files


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


def atomic_write_text(path: Path, text: str) -> None:
    """Write a UTF-8 text file through a temporary name (a viewer polling the folder never
    reads half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- checkpoints


def load_checkpoint(path: Path) -> dict[str, Any]:
    """torch.load with weights_only=True: checkpoints hold tensors and plain Python only, so
    a checkpoint from elsewhere cannot run code.  A missing or unreadable file is a
    ``TrainError``."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and weights_only errors all mean "unusable"
        raise TrainError(f"{path}: not a readable checkpoint ({exc.__class__.__name__})") from exc


def previous_run(
    path: Path, resume: bool, fmt: int, keys: tuple[str, ...] = ("config",)
) -> dict[str, Any] | None:
    """The checkpoint at ``path`` that ``--resume`` continues, or None for a fresh run; a
    fresh run is refused when the folder already holds one (it would be overwritten), and a
    checkpoint of another trainer or format version (``fmt``, and the ``keys`` that trainer
    always writes) is refused with a message."""
    path = Path(path)
    if resume:
        ck = load_checkpoint(path)
        if ck.get("format") != fmt or any(k not in ck for k in keys):
            raise TrainError(f"{path}: not a checkpoint of this trainer (format {fmt})")
        return ck
    if path.exists():
        raise TrainError(
            f"{path.parent} already holds a checkpoint: pass --resume to continue it, "
            "or choose another --out"
        )
    return None


# ------------------------------------------------------------------------- random streams


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of one rank's own random stream (noise, dropout), distinct per rank and, for
    a stream restarted at ``step``, per step."""
    return seed * 100_003 + 1 + rank + 7919 * step


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's torch RNG states (the loops draw all their randomness from torch)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Put back what ``rng_state`` returned."""
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def gather_rng(d: Dist) -> list[dict[str, Any]]:
    """Every rank's RNG state, in rank order (each rank draws its own noise): what a
    checkpoint stores so that ``restore_rng`` can continue every stream."""
    mine = rng_state(d.device)
    if not d.distributed:
        return [mine]
    return gather_objects({k: v.cpu() for k, v in mine.items()}, d)


def restore_rng(
    states: list[dict[str, Any]], d: Dist, seed: int, step: int, what_differs: str
) -> None:
    """Continue this rank's random stream from a checkpoint's ``states`` (``gather_rng``'s
    list).  A checkpoint written by another number of processes cannot be continued exactly:
    this rank is reseeded (``rank_seed(seed, rank, step)``) and a note says so, ending with
    ``what_differs`` (what this means for the trainer's run)."""
    if len(states) == d.world:
        set_rng_state(states[d.rank], d.device)
        return
    torch.manual_seed(rank_seed(seed, d.rank, step))
    say(
        d,
        f"note: the checkpoint was written by {len(states)} process(es), this run has "
        f"{d.world}: {what_differs}",
    )


# ---------------------------------------------------------------------------- a trainer's state

CHECKPOINT = "checkpoint.pt"


class Checkpointed:
    """``state()``, ``save()`` and ``load()`` for a trainer whose checkpoint is the state dicts
    of its networks and optimisers, its step and seconds, every rank's random state, the
    commands that ran it, and a few plain values of its own.

    A trainer says what it keeps: ``saved_objects()`` (checkpoint key → anything with
    ``state_dict``/``load_state_dict``), ``saved_values()`` (checkpoint key → plain value;
    collective, like ``state()``) read back by ``restore_values()``, ``FORMAT`` and
    ``RNG_NOTE`` (what differs when a run resumes on another number of processes)."""

    FORMAT = 1
    RNG_NOTE = "training continues, but not as the same random stream"

    # Set by the trainer.
    cfg: dict[str, Any]
    d: Dist
    out: Path
    step: int
    seconds: float
    per_epoch: int
    commands: list[str]

    def saved_objects(self) -> dict[str, Any]:
        raise NotImplementedError

    def saved_values(self) -> dict[str, Any]:
        return {}

    def restore_values(self, ck: dict[str, Any]) -> None:
        """Read back what ``saved_values`` stored."""

    def state(self) -> dict[str, Any]:
        """Everything --resume needs (tensors and plain Python: loads with weights_only).
        Collective: every rank must call it."""
        state: dict[str, Any] = {"format": self.FORMAT, "config": self.cfg}
        state.update({k: obj.state_dict() for k, obj in self.saved_objects().items()})
        state.update(
            step=self.step,
            epoch=self.step / self.per_epoch,
            seconds=self.seconds,
            world_size=self.d.world,
            rng=gather_rng(self.d),
        )
        state.update(self.saved_values())
        state["commands"] = self.commands
        return state

    def save(self, name: str = CHECKPOINT) -> None:
        """Write ``out/name`` (the main process; collective)."""
        state = self.state()
        if self.d.main:
            atomic_save(state, self.out / name)

    def load(self, ck: dict[str, Any]) -> None:
        for key, obj in self.saved_objects().items():
            obj.load_state_dict(ck[key])
        self.step, self.seconds = int(ck["step"]), float(ck["seconds"])
        self.commands = list(ck.get("commands", []))
        self.restore_values(ck)
        restore_rng(ck.get("rng") or [], self.d, self.cfg["seed"], self.step, self.RNG_NOTE)
