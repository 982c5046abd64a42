"""Noise schedules: how much signal is left at each of the ``T`` training steps.

A schedule is a small object built from a config (``{"kind": "cosine", "steps": 1000}``) and
is the one place both the trainer and the samplers read alpha-bar from, so a model always
samples with the schedule it was trained on (the config is in its card and manifest).
``alpha_bar[0] = 1`` is the clean image, ``alpha_bar[T]`` nearly pure noise; the denoiser is
told the noise variance ``1 - alpha_bar[t]`` (Foster's noise-variance embedding), not ``t``,
so any subset of the steps can be sampled.  numpy only: the app uses it too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

KINDS = ("cosine", "offset-cosine", "linear")
MIN_ALPHA_BAR = 1e-5  # the last steps keep a trace of signal: log-SNR stays finite


@dataclass(frozen=True)
class Schedule:
    """alpha-bar at steps 0..T of one schedule; ``config`` rebuilds it (``from_config``)."""

    kind: str
    alpha_bar: np.ndarray  # float64, (T + 1,), alpha_bar[0] == 1, decreasing
    config: Mapping[str, Any]

    @property
    def steps(self) -> int:
        return len(self.alpha_bar) - 1

    def noise_variance(self, t: np.ndarray | int) -> np.ndarray:
        return 1.0 - self.alpha_bar[np.asarray(t)]

    def rates(self, t: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """(signal rate, noise rate) = (sqrt(alpha_bar), sqrt(1 - alpha_bar)) at step t."""
        ab = self.alpha_bar[np.asarray(t)]
        return np.sqrt(ab), np.sqrt(1.0 - ab)


def cosine(steps: int, s: float = 0.008) -> np.ndarray:
    """Nichol & Dhariwal's cosine schedule: f(t) = cos^2((t/T + s)/(1 + s) * pi/2)."""
    t = np.arange(steps + 1) / steps
    f = np.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return f / f[0]


def offset_cosine(steps: int, min_signal: float = 0.02, max_signal: float = 0.95) -> np.ndarray:
    """Foster's offset cosine: the signal rate is cos of an angle that moves linearly from
    acos(max_signal) to acos(min_signal); step 0 stays the clean image."""
    start, end = math.acos(max_signal), math.acos(min_signal)
    t = np.arange(1, steps + 1) / steps
    return np.concatenate([[1.0], np.cos(start + t * (end - start)) ** 2])


def linear(steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """Ho et al.'s linear betas (given for 1000 steps; scaled for other step counts)."""
    scale = 1000 / steps
    betas = np.linspace(beta_start * scale, min(beta_end * scale, 0.999), steps)
    return np.concatenate([[1.0], np.cumprod(1.0 - betas)])


def from_config(config: Mapping[str, Any]) -> Schedule:
    """The schedule a config names; ValueError with the reason for a bad one."""
    cfg = dict(config)
    kind = str(cfg.pop("kind", "cosine"))
    steps = int(cfg.pop("steps", 1000))
    if steps < 1:
        raise ValueError(f"a schedule needs at least 1 step, not {steps}")
    try:
        builder = {"cosine": cosine, "offset-cosine": offset_cosine, "linear": linear}[kind]
    except KeyError:
        raise ValueError(f"unknown schedule {kind!r} (one of {', '.join(KINDS)})") from None
    try:
        ab = builder(steps, **cfg)
    except TypeError as exc:
        raise ValueError(f"schedule {kind!r}: {exc}") from None
    # The floor falls a little with t, so that no two steps are the same (the end of the
    # cosine schedule reaches 0 otherwise): every step the sampler takes changes the image.
    floor = MIN_ALPHA_BAR * (2.0 - np.arange(steps + 1) / steps)
    ab = np.minimum(np.maximum(ab, floor), 1.0)
    ab[0] = 1.0
    if np.any(np.diff(ab) >= 0):
        raise ValueError(f"schedule {kind!r} with {cfg} does not lose signal at every step")
    return Schedule(kind, ab, {"kind": kind, "steps": steps, **cfg})
