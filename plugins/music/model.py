"""The exported music transformer driven from numpy: a prefill graph and a one-token step
graph sharing a key/value cache.

Graph contract (written by ``train/export.py``, checked by the manifest's signatures):

- ``prefill``: ``tokens`` int64 [batch, time] -> ``logits`` float32 [batch, time, vocab],
  ``key_0``, ``value_0``, ``key_1``, ... float32 [batch, kv_heads, time, head_dim];
- ``step``: ``token`` int64 [batch], ``past_key_0``, ``past_value_0``, ... [batch, kv_heads,
  past, head_dim] -> ``logits`` [batch, vocab], ``key_0``, ... [batch, kv_heads, 1,
  head_dim]: the new token's key and value only.

:class:`KVCache` keeps the cache in buffers with room to grow and appends each step's new
key and value in place; the step graph reads the past where it lies (a view, not a copy, for
one row), so a token costs nearly the same however long the piece is.

The model's tokenizer is described in card.json (``tokenizer``); positions are relative, so
a piece longer than ``window`` tokens is continued from its last ``window / 2`` tokens
(prefilled again), which also bounds the cost of a step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.jobs import TaskState

from .tokenizers import BOS, TokenError, Tokenizer, tokenizer_from_config

DEFAULT_WINDOW = 1024


class KVCache:
    """key_0, value_0, key_1, ... ([batch, kv_heads, time, head_dim] each) in buffers with
    room to grow along time: appending a token is a write, not a copy of the cache."""

    def __init__(self, tensors: list[np.ndarray]) -> None:
        n = tensors[0].shape[2]
        self.length = n
        self.buffers = []
        for t in tensors:
            buf = np.empty((*t.shape[:2], max(64, 2 * n), t.shape[3]), np.float32)
            buf[:, :, :n] = t
            self.buffers.append(buf)

    def views(self) -> list[np.ndarray]:
        """The cached part of each buffer, contiguous (a view for one row and one key/value
        head, the studio's case; numpy copies otherwise)."""
        return [np.ascontiguousarray(b[:, :, : self.length]) for b in self.buffers]

    def append(self, new: list[np.ndarray]) -> None:
        """Add one token's keys and values ([batch, kv_heads, 1, head_dim] each)."""
        if self.length == self.buffers[0].shape[2]:  # full: double (rarely)
            self.buffers = [np.concatenate([b, np.empty_like(b)], axis=2) for b in self.buffers]
        for b, t in zip(self.buffers, new, strict=True):
            b[:, :, self.length] = t[:, :, 0]
        self.length += 1


def tokenizer_of(ctx: PluginContext) -> Tokenizer:
    """The model's tokenizer: the manifest's ``extras.tokenizer`` or the card's."""
    cfg = (ctx.model.extras.get("tokenizer") if ctx.model else None) or ctx.card().get("tokenizer")
    if not cfg:
        raise JobError("the model has no tokenizer description (card.json 'tokenizer')")
    try:
        return tokenizer_from_config(dict(cfg))
    except TokenError as exc:
        raise JobError(str(exc)) from None


class MusicModel:
    """The two sessions and the tokenizer, checked against each other on creation."""

    def __init__(self, prefill: Any, step: Any, tokenizer: Tokenizer, window: int) -> None:
        self.prefill_session, self.step_session = prefill, step
        self.tokenizer = tokenizer
        names = list(step.input_names)
        if "token" not in names or not any(n.startswith("past_key_") for n in names):
            raise JobError("not a music step graph (inputs token, past_key_0, ...)")
        self.layers = sum(1 for n in names if n.startswith("past_key_"))
        self.cache_out = [f"{k}_{i}" for i in range(self.layers) for k in ("key", "value")]
        self.cache_in = ["past_" + n for n in self.cache_out]
        self.window = max(8 * tokenizer.period, window - window % tokenizer.period)
        logits, _ = self.prefill(np.array([[BOS]], np.int64))
        if logits.shape[-1] != len(tokenizer):
            raise JobError(
                f"the graph predicts {logits.shape[-1]} tokens but the tokenizer has "
                f"{len(tokenizer)}: card.json does not belong to this model"
            )

    @classmethod
    def from_context(cls, ctx: PluginContext) -> MusicModel:
        card = ctx.card()
        window = int(card.get("window") or DEFAULT_WINDOW)
        return cls(ctx.session("prefill"), ctx.session("step"), tokenizer_of(ctx), window)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def prefill(
        self, tokens: np.ndarray, state: TaskState | None = None
    ) -> tuple[np.ndarray, KVCache]:
        """Logits after each of ``tokens`` [batch, time] and their cache."""
        out = self.prefill_session.run(
            {"tokens": np.ascontiguousarray(tokens, np.int64)}, ["logits", *self.cache_out], state
        )
        return out[0], KVCache(list(out[1:]))

    def step(
        self, token: np.ndarray, cache: KVCache, state: TaskState | None = None
    ) -> tuple[np.ndarray, KVCache]:
        """Logits [batch, vocab] after one more token per row; ``cache`` grows by it."""
        feeds = {"token": np.ascontiguousarray(token, np.int64).reshape(-1)}
        feeds.update(zip(self.cache_in, cache.views(), strict=True))
        out = self.step_session.run(feeds, ["logits", *self.cache_out], state)
        cache.append(list(out[1:]))
        return out[0], cache

    def clip_ids(self, ids: np.ndarray) -> np.ndarray:
        """Ids an embedding can look up (anything else becomes REST): a token from a broken
        file or a caller never reaches the graph out of range."""
        ids = np.asarray(ids, np.int64)
        return np.where((ids >= 0) & (ids < self.vocab_size), ids, 1)


class Stream:
    """Generation state over :class:`MusicModel`: the tokens so far (BOS first), the logits
    for the next one, and the cache, re-prefilled from the last ``window / 2`` tokens when
    it reaches ``window`` (aligned to the tokenizer's cycle, so phases stay right)."""

    def __init__(self, model: MusicModel, prompt: np.ndarray, state: TaskState | None) -> None:
        self.model, self.state = model, state
        self.ids = [int(t) for t in model.clip_ids(np.asarray(prompt).reshape(-1))]
        if not self.ids or self.ids[0] != BOS:
            self.ids.insert(0, BOS)
        self._restart()

    def _restart(self) -> None:
        """Prefill the tail: all tokens when they fit the window, else the last half window,
        starting on a cycle boundary counted from BOS."""
        period = self.model.tokenizer.period
        ids = self.ids
        if len(ids) > self.model.window:
            keep = self.model.window // 2
            start = len(ids) - keep
            start -= start % period
            ids = ids[start:]
        logits, self.cache = self.model.prefill(np.array([ids], np.int64), self.state)
        self.logits = logits[0, -1]
        self.cached = len(ids)

    @property
    def phase(self) -> int:
        """The phase of the next token (its position after BOS, modulo the period)."""
        return (len(self.ids) - 1) % self.model.tokenizer.period

    def push(self, token: int) -> None:
        self.ids.append(int(token))
        if self.cached >= self.model.window:
            self._restart()
            return
        logits, self.cache = self.model.step(np.array([token], np.int64), self.cache, self.state)
        self.logits = logits[0]
        self.cached += 1
