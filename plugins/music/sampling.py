"""Choosing the next token: the grammar's mask, then temperature, top-k and top-p (nucleus)
filtering, for one row or a batch of rows.  numpy only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GREEDY_BELOW = 1e-3  # a temperature this low is argmax


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@dataclass(frozen=True)
class Sampler:
    """Mask, temperature, top-k, top-p, in that order; ``top_k = 0`` and ``top_p = 1`` switch
    the filters off.  ``choose`` draws one uniform number per row per call, always, so the
    same seed gives the same piece whatever the temperature does to the distribution."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW

    def distribution(self, logits: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
        """The filtered distribution [rows, vocab] (or [vocab]) the draws come from.  Rows
        whose mask allows nothing fall back to the unmasked logits (a model cannot make the
        plugin fail)."""
        z = np.atleast_2d(np.asarray(logits, np.float64)).copy()
        z[~np.isfinite(z)] = -1e30  # a NaN or inf logit must not poison the row
        if allowed is not None:
            mask = np.broadcast_to(np.atleast_2d(allowed), z.shape)
            usable = mask.any(axis=1, keepdims=True)
            z = np.where(mask | ~usable, z, -np.inf)
        if self.greedy:
            out = np.zeros_like(z)
            out[np.arange(len(z)), np.argmax(z, axis=1)] = 1.0
            return out if np.ndim(logits) > 1 else out[0]
        z = z / self.temperature
        p = np.exp(z - z.max(axis=1, keepdims=True))
        if 0 < self.top_k < p.shape[1]:
            order = np.argsort(-p, axis=1, kind="stable")
            np.put_along_axis(p, order[:, self.top_k :], 0.0, axis=1)
        if self.top_p < 1.0:
            p /= p.sum(axis=1, keepdims=True)
            order = np.argsort(-p, axis=1, kind="stable")
            sorted_p = np.take_along_axis(p, order, axis=1)
            before = np.cumsum(sorted_p, axis=1) - sorted_p  # mass of the likelier tokens
            np.put_along_axis(p, order, np.where(before >= self.top_p, 0.0, sorted_p), axis=1)
        p /= p.sum(axis=1, keepdims=True)
        return p if np.ndim(logits) > 1 else p[0]

    def choose(
        self, logits: np.ndarray, rng: np.random.Generator, allowed: np.ndarray | None = None
    ) -> np.ndarray:
        """One id per row of ``logits`` [rows, vocab]."""
        p = np.atleast_2d(self.distribution(np.atleast_2d(logits), allowed))
        u = rng.random(len(p))
        cdf = np.cumsum(p, axis=1)
        ids = (cdf <= (u * cdf[:, -1])[:, None]).sum(axis=1)  # skips zero-probability ids
        return np.minimum(ids, p.shape[1] - 1).astype(np.int64)
