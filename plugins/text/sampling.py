"""Choosing the next character: softmax temperature, top-k and top-p (nucleus) filtering, and
where to stop.  numpy only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GREEDY_BELOW = 1e-3  # a temperature this low is argmax (exp(log p / T) overflows long before 0)
SENTENCE_ENDS = ".!?"
CLOSERS = "\"')]»”’"
STOPS = ("length", "sentence", "paragraph")


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@dataclass(frozen=True)
class Sampler:
    """Temperature, then top-k, then top-p, as in Chollet (``p' ∝ exp(log p / T)``) and the
    usual nucleus sampling; ``top_k = 0`` and ``top_p = 1`` switch those filters off."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW

    def distribution(self, logits: np.ndarray) -> np.ndarray:
        """The reweighted, filtered distribution over the vocabulary (one row of logits)."""
        return self.reweight(log_softmax(logits))

    def reweight(self, logp: np.ndarray) -> np.ndarray:
        """:meth:`distribution` from log-probabilities."""
        if self.greedy:
            out = np.zeros_like(logp)
            out[int(np.argmax(logp))] = 1.0
            return out
        scaled = logp / self.temperature
        p = self._filtered(np.exp(scaled - scaled.max()))
        return p / p.sum()

    def _filtered(self, p: np.ndarray) -> np.ndarray:
        """Top-k then top-p on unnormalised weights ``p`` (changed in place)."""
        if 0 < self.top_k < len(p):
            # Ties at the k-th value are dropped by rank, so exactly k characters remain.
            order = np.argsort(-p, kind="stable")
            p[order[self.top_k :]] = 0.0
        if self.top_p < 1.0:
            p /= p.sum()
            order = np.argsort(-p, kind="stable")
            before = np.cumsum(p[order]) - p[order]  # mass of the more likely characters
            p[order[before >= self.top_p]] = 0.0  # the most likely one is always kept
        return p

    def choose(self, logits: np.ndarray, u: float) -> tuple[int, float]:
        """One character id for the uniform draw ``u`` in [0, 1), and the probability the model
        itself (T = 1, unfiltered) gave it.  The caller draws ``u`` even when greedy, so
        changing T never shifts the stream of draws and a seed fixes the whole text.

        This runs once per generated character, so it works on ``exp(logits - max)`` directly
        (the softmax up to its sum) instead of building log-probabilities first, and calls
        array methods rather than numpy's module functions (their dispatch costs more than the
        arithmetic on a vocabulary-sized row): the same draws as :meth:`distribution`."""
        z = logits.astype(np.float64)
        z -= z.max()
        e = np.exp(z)
        if self.greedy:
            i = int(z.argmax())
        else:
            plain = self.temperature == 1.0 and self.top_k == 0 and self.top_p >= 1.0
            cdf = (e if plain else self._filtered(np.exp(z / self.temperature))).cumsum()
            i = min(int(cdf.searchsorted(u * cdf[-1], side="right")), len(cdf) - 1)
        return i, float(e[i] / e.sum())


def ends_here(generated: str, nxt: str, stop: str) -> bool:
    """True when ``nxt`` should not be added because ``generated`` already ends a sentence or
    a paragraph (the check looks one character ahead, so "3.5" or "Mr.X" do not stop)."""
    if stop == "sentence":
        body = generated.rstrip(CLOSERS)
        return nxt.isspace() and bool(body) and body[-1] in SENTENCE_ENDS
    if stop == "paragraph":
        return nxt == "\n" and generated.endswith("\n") and bool(generated.strip())
    return False
