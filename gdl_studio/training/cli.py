"""The command around a training run: its options (and which of them ``--resume`` may
change), the command line recorded in checkpoints and cards, Ctrl+C between steps, the
progress bar, and ``run_main``, the body of every trainer's ``main``."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from gdl_studio.training.distributed import Dist, any_rank, setup, teardown
from gdl_studio.training.errors import TrainError, fail

# ------------------------------------------------------------------------------- options


class Options:
    """A trainer's argparse parser, built in two ways: with defaults to run, and with
    ``suppress=True`` (no defaults and nothing required), so that parsing the same argv tells
    which options the user actually gave: a resumed run refuses to change those that shape
    training."""

    def __init__(self, prog: str, description: str, suppress: bool = False) -> None:
        self.suppress = suppress
        self.parser = argparse.ArgumentParser(
            prog=prog,
            description=description,
            argument_default=argparse.SUPPRESS if suppress else None,
        )

    def add(self, *flags: str, default: Any = None, **kw: Any) -> None:
        """``parser.add_argument``, with ``default`` dropped when suppressing."""
        if not self.suppress:
            kw["default"] = default
        self.parser.add_argument(*flags, **kw)

    def add_precision(self) -> None:
        """``--precision fp32|bf16``: a run option (a resumed run may change it), used through
        :func:`autocast`."""
        self.add(
            "--precision",
            choices=["fp32", "bf16"],
            default="fp32",
            help="bf16: the forward pass under bfloat16 autocast (weights, optimiser and loss "
            "stay float32); faster on recent GPUs and on CPUs with AMX, slower on CPUs with "
            "AVX-512 BF16 alone (benchmarks/train_precision.py measures it)",
        )

    def add_run_length(self) -> None:
        """``--epochs N`` or ``--steps N`` (one of them; neither: the trainer's default)."""
        length = self.parser.add_mutually_exclusive_group()
        kw: dict[str, Any] = {} if self.suppress else {"default": None}
        for flag in ("--epochs", "--steps"):
            length.add_argument(flag, type=int, **kw)


def resumed_settings(
    previous: Mapping[str, Any], explicit: Mapping[str, Any], given: Mapping[str, Any]
) -> dict[str, Any]:
    """A checkpoint's settings for the run that ``--resume`` continues.

    ``given``: the settings the user gave again that shape training (the trainer leaves out
    those a resumed run may change, and normalises the rest as its config stores them); any
    that differs from ``previous`` is refused, as it would no longer be the same run.  Then
    the run length in ``explicit`` (``--steps``/``--epochs``) replaces the checkpoint's."""
    changed = [
        f"--{k.replace('_', '-')} (checkpoint {previous[k]!r}, given {v!r})"
        for k, v in given.items()
        if k in previous and v != previous[k]
    ]
    if changed:
        raise TrainError(
            "--resume keeps the checkpoint's settings; these differ: " + "; ".join(changed)
        )
    cfg = dict(previous)
    if "steps" in explicit:
        cfg["steps"], cfg["epochs"] = explicit["steps"], None
    if "epochs" in explicit:
        cfg["epochs"], cfg["steps"] = explicit["epochs"], None
    return cfg


def command_line(module: str, argv: Sequence[str], local_world: int = 1) -> str:
    """The command that started this run, as a user would type it again."""
    head = f"python -m {module}"
    if local_world > 1:
        head = f"torchrun --nproc_per_node {local_world} -m {module}"
    return " ".join([head, shlex.join(list(argv))]).strip()


# ------------------------------------------------------------------------------ the run


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks between steps: an interrupted run
    saves a checkpoint at a step boundary instead of dying half-way through an update.  A
    second Ctrl+C stops at once."""

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


def progress_bar(total: int, initial: int, d: Dist) -> tqdm:
    """The steps bar on stderr (the main process only; stdout keeps the run's messages)."""
    return tqdm(
        total=total,
        initial=initial,
        disable=not d.main,
        unit="step",
        dynamic_ncols=True,
        mininterval=1.0,
        file=sys.stderr,
    )


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters of ``module`` (what a trainer reports when it starts)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def say(d: Dist, text: str) -> None:
    """Print a line on stdout from the main process, above the progress bar."""
    if d.main:
        tqdm.write(text, file=sys.stdout)
        sys.stdout.flush()


class Trainer(Protocol):
    """What ``start_run`` and ``run_main`` need of a trainer."""

    step: int  # steps done
    commands: list[str]  # the commands that started and resumed the run

    @property
    def total_steps(self) -> int: ...

    def load(self, ck: dict[str, Any]) -> None:
        """Continue from the checkpoint ``ck``."""

    def run(self) -> int:
        """Train up to ``total_steps``; returns the exit code."""


def start_run(
    trainer: Trainer, ck: dict[str, Any] | None, command: str, checkpoint: Path, d: Dist
) -> None:
    """Continue the checkpoint ``ck`` (``trainer.load``) when ``--resume`` gave one, and
    record ``command``: a run's commands are the one that started it, then one per resume."""
    if ck is not None:
        trainer.load(ck)
        trainer.commands.append(command)
        say(d, f"resuming {checkpoint} at step {trainer.step}")
    else:
        trainer.commands = [command]


class RunLimits:
    """Where this invocation of a run stops before its length: ``--stop-after`` steps past
    where it started, ``--time-limit`` minutes from now (both in ``cfg``, None: no limit), or
    Ctrl+C (the ``StopFlag``)."""

    def __init__(self, cfg: Mapping[str, Any], step: int, total: int) -> None:
        stop_after, time_limit = cfg.get("stop_after"), cfg.get("time_limit")
        self.stop_at = total if stop_after is None else min(total, step + stop_after)
        self.deadline = None if time_limit is None else time.monotonic() + 60 * time_limit

    def check(self, flag: StopFlag, step: int, last: bool, d: Dist) -> tuple[bool, bool]:
        """(interrupted, paused) after ``step``, agreed by every rank.  Collective."""
        interrupted = any_rank(flag.requested, d)
        timed_out = self.deadline is not None and any_rank(time.monotonic() > self.deadline, d)
        return interrupted, not last and (step >= self.stop_at or timed_out)


def finish_run(
    d: Dist,
    step: int,
    total: int,
    per_epoch: int,
    seconds: float,
    checkpoint: Path,
    interrupted: bool,
    paused: bool,
) -> int:
    """Say how the run ended and return its exit code (130 when interrupted)."""
    where = f"checkpoint {checkpoint}"
    if interrupted or paused:
        say(d, f"stopped at step {step} of {total}; {where}; --resume continues")
        return 130 if interrupted else 0
    say(
        d,
        f"done: step {step}/{total} ({step / per_epoch:.2f} epochs), "
        f"{seconds:.0f} s of training; {where}",
    )
    return 0


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The context for a training forward pass at ``precision`` (``--precision``)."""
    return torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16")


# ------------------------------------------------------------------------------- main


def run_main(
    prog: str,
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    prepare: Callable[[list[str], argparse.Namespace, Dist], Trainer],
    errors: tuple[type[Exception], ...] = (TrainError,),
) -> int:
    """The body of a trainer's ``main(argv)``: parse ``argv`` (the command line when None;
    usage errors exit before anything starts), join the processes (``--device``,
    ``--threads``), build the trainer with ``prepare(argv, args, dist)`` and return its
    ``run()`` (at once, with 0, when a resumed run is already at its length), then leave the
    process group again.

    A ``TrainError`` (or another of ``errors``, e.g. a dataset error) ends the command as one
    line on stderr with exit code 2, said once (by the main process)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    try:
        d = setup(args.device, args.threads)
    except TrainError as exc:
        fail(prog, str(exc))
    try:
        trainer = prepare(argv, args, d)
        if trainer.step >= trainer.total_steps:
            say(
                d,
                f"already at step {trainer.step} of {trainer.total_steps}: pass a larger "
                "--steps/--epochs to train further",
            )
            return 0
        return trainer.run()
    except errors as exc:
        if d.main:
            fail(prog, str(exc))
        raise SystemExit(2) from None
    finally:
        teardown(d)
