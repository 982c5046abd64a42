"""The reverse process: samplers that turn noise into an image with a trained denoiser.

A sampler is a small object built from a config (``{"kind": "ddim", "steps": 50, "eta": 0}``)
and knows nothing of the network: it calls ``eps_fn(x, noise_variance) -> predicted noise``
and reads alpha-bar from the model's :class:`~.schedule.Schedule`.  Any step count from 1 to
the schedule's T takes an evenly spaced subset of the training steps.

- DDIM (Song et al.): x_j = sqrt(ab_j) x0 + sqrt(1 - ab_j - s^2) eps + s z with
  s = eta * sqrt((1 - ab_j)/(1 - ab_i)) * sqrt(1 - ab_i/ab_j); eta = 0 is deterministic, eta
  = 1 has DDPM's posterior variance.
- DDPM ancestral (Ho et al.): the posterior mean of x_j given x_i and the predicted x0, with
  variance the posterior's (``variance="posterior"``) or the step's beta (``"beta"``).

Both clip the predicted x0 to the image range [-1, 1] (and re-derive the noise from it), as
the reference implementations do.  ``Inpaint`` re-imposes the known pixels, noised to the
current level, after every step, and can resample each step (RePaint's "jumps" of one step).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .schedule import Schedule

EpsFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
KINDS = ("ddim", "ddpm")


def timesteps(steps: int, start: int) -> list[int]:
    """``steps`` evenly spaced steps from ``start`` down to 0 (0 is the clean image, so
    there are steps + 1 entries; fewer when ``steps`` exceeds ``start``)."""
    if start < 1:
        return [0]
    steps = max(1, min(int(steps), start))
    ts = np.round(np.linspace(start, 0, steps + 1)).astype(int)
    return [int(t) for t in dict.fromkeys(ts.tolist())]


@dataclass(frozen=True)
class Inpaint:
    """Keep ``known`` (an image in [-1, 1], the sample's shape) where ``mask`` is 0 and
    generate where it is 1 (broadcastable to the sample); ``resample`` > 1 re-noises each
    step and repeats it that many times, so the new part agrees with the known part."""

    known: np.ndarray
    mask: np.ndarray
    resample: int = 1

    def impose(
        self, x: np.ndarray, t: int, schedule: Schedule, rng: np.random.Generator
    ) -> np.ndarray:
        signal, noise = schedule.rates(t)
        ref = self.known if t == 0 else signal * self.known + noise * rng.standard_normal(x.shape)
        return self.mask * x + (1 - self.mask) * ref


@dataclass(frozen=True)
class Sampler:
    kind: str = "ddim"
    steps: int = 50
    eta: float = 0.0
    variance: str = "posterior"  # ddpm only
    clip: bool = True

    def predict_x0(
        self, x: np.ndarray, eps: np.ndarray, t: int, schedule: Schedule
    ) -> tuple[np.ndarray, np.ndarray]:
        """The clean image the predicted noise implies (clipped), and the noise that clipped
        image implies."""
        signal, noise = schedule.rates(t)
        x0 = (x - noise * eps) / signal
        if self.clip:
            x0 = np.clip(x0, -1.0, 1.0)
            eps = (x - signal * x0) / noise
        return x0, eps

    def step(
        self,
        x: np.ndarray,
        eps: np.ndarray,
        i: int,
        j: int,
        schedule: Schedule,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """From step i to step j < i; returns (x_j, predicted x0)."""
        x0, eps = self.predict_x0(x, eps, i, schedule)
        if j == 0:
            return x0, x0
        ab_i, ab_j = schedule.alpha_bar[i], schedule.alpha_bar[j]
        if self.kind == "ddim":
            sigma = self.eta * np.sqrt((1 - ab_j) / (1 - ab_i) * (1 - ab_i / ab_j))
            direction = np.sqrt(max(1 - ab_j - sigma**2, 0.0)) * eps
            out = np.sqrt(ab_j) * x0 + direction
        else:  # ddpm ancestral, with the step's beta spanning i -> j
            beta = 1 - ab_i / ab_j
            mean = (np.sqrt(ab_j) * beta / (1 - ab_i)) * x0 + (
                np.sqrt(1 - beta) * (1 - ab_j) / (1 - ab_i)
            ) * x
            var = beta * (1 - ab_j) / (1 - ab_i) if self.variance == "posterior" else beta
            out, sigma = mean, np.sqrt(var)
        if sigma > 0:
            out = out + sigma * rng.standard_normal(x.shape)
        return out, x0

    def run(
        self,
        eps_fn: EpsFn,
        schedule: Schedule,
        x: np.ndarray,
        rng: np.random.Generator,
        start: int | None = None,
        inpaint: Inpaint | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Denoise ``x`` (noise at step ``start``, default T) to step 0; yields (x_j,
        predicted x0) after every step, float32.  The last x_j is the sample."""
        start = schedule.steps if start is None else int(start)
        ts = timesteps(self.steps, start)
        x = x.astype(np.float64)
        for i, j in itertools.pairwise(ts):
            for r in range(inpaint.resample if inpaint else 1):
                var = np.full(len(x), 1.0 - schedule.alpha_bar[i], np.float32)
                eps = np.asarray(eps_fn(x.astype(np.float32), var), np.float64)
                x_new, x0 = self.step(x, eps, i, j, schedule, rng)
                if inpaint is not None:
                    x_new = inpaint.impose(x_new, j, schedule, rng)
                    if r < inpaint.resample - 1 and j > 0:
                        # RePaint: back to level i with fresh noise, and step again.
                        keep = schedule.alpha_bar[i] / schedule.alpha_bar[j]
                        x = np.sqrt(keep) * x_new + np.sqrt(1 - keep) * rng.standard_normal(x.shape)
                        continue
                x = x_new
                break
            yield x.astype(np.float32), x0.astype(np.float32)


def from_config(config: Mapping[str, Any]) -> Sampler:
    """The sampler a config names; ValueError with the reason for a bad one."""
    cfg = dict(config)
    kind = str(cfg.get("kind", "ddim"))
    if kind not in KINDS:
        raise ValueError(f"unknown sampler {kind!r} (one of {', '.join(KINDS)})")
    steps = int(cfg.get("steps", 50))
    eta = float(cfg.get("eta", 0.0))
    variance = str(cfg.get("variance", "posterior"))
    if steps < 1:
        raise ValueError(f"a sampler needs at least 1 step, not {steps}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be between 0 and 1, not {eta}")
    if variance not in ("posterior", "beta"):
        raise ValueError(f"variance must be 'posterior' or 'beta', not {variance!r}")
    return Sampler(kind, steps, eta, variance, bool(cfg.get("clip", True)))
