"""The step loop the trainers share: train a step, log the interval's means (over the steps
and the ranks), score and save at the end of each epoch (and every ``every`` steps), and stop
cleanly at the run's length, ``--stop-after``, ``--time-limit`` or Ctrl+C with a checkpoint.

A trainer brings what differs: ``train_step`` (its losses as a dict of floats),
``write_row`` (its log file), ``end_of_epoch`` (its scores and samples) and ``save``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from gdl_studio.training.cli import RunLimits, StopFlag, finish_run, progress_bar
from gdl_studio.training.distributed import Dist, all_sum


class LoopTrainer(Protocol):
    cfg: dict[str, Any]  # needs "batch" and "log_every" (and the RunLimits keys)
    d: Dist
    step: int
    seconds: float
    per_epoch: int

    @property
    def total_steps(self) -> int: ...

    def train_step(self) -> dict[str, float]: ...

    def write_row(self, step: int, epoch: float, means: dict[str, float]) -> None:
        """Append one log row (called on the main process only)."""

    def end_of_epoch(self) -> None:
        """Score, sample and report.  Collective: every rank calls it."""

    def save(self) -> None:
        """Write the checkpoint.  Collective."""


def run_loop(
    t: LoopTrainer,
    checkpoint: Path,
    postfix: Mapping[str, tuple[str, str]],
    every: int = 0,
) -> int:
    """Train ``t`` up to its length; returns the exit code (see ``finish_run``).

    ``postfix``: what the progress bar shows, {label: (key of train_step's dict, format)}.
    ``every``: also call ``end_of_epoch`` and save every this many steps (0: per epoch only).
    Each log row holds the means of train_step's values since the last row and ``img_s``
    (images a second over all processes, from ``cfg["batch"]``)."""
    d, cfg = t.d, t.cfg
    total = t.total_steps
    limits = RunLimits(cfg, t.step, total)
    bar = progress_bar(total, t.step, d)
    sums: dict[str, float] = {}
    count, seconds = 0, 0.0
    interrupted = paused = False
    with StopFlag() as flag:
        while t.step < total:
            t0 = time.perf_counter()
            stats = t.train_step()
            t.step += 1
            dt = time.perf_counter() - t0
            t.seconds += dt
            seconds += dt
            count += 1
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            if d.main:
                bar.update(1)
                shown = {label: format(stats[key], fmt) for label, (key, fmt) in postfix.items()}
                bar.set_postfix(shown, refresh=False)
            last = t.step >= total
            if t.step % cfg["log_every"] == 0 or last:
                keys = sorted(sums)
                totals = all_sum([sums[k] for k in keys], d)
                if d.main:
                    means = {k: s / (count * d.world) for k, s in zip(keys, totals, strict=True)}
                    means["img_s"] = cfg["batch"] * count / max(seconds, 1e-9)
                    t.write_row(t.step, t.step / t.per_epoch, means)
                sums, count, seconds = {}, 0, 0.0
            epoch_end = t.step % t.per_epoch == 0
            extra = bool(every) and t.step % every == 0
            interrupted, paused = limits.check(flag, t.step, last, d)
            if epoch_end or extra or last or interrupted or paused:
                t.end_of_epoch()
                t.save()
            if interrupted or paused:
                break
    bar.close()
    return finish_run(d, t.step, total, t.per_epoch, t.seconds, checkpoint, interrupted, paused)
