"""The exported step graph of a character LSTM, driven from numpy: one call per character.

Graph contract (written by ``train/export.py``, checked by the manifest's signature):
``token`` int64 [batch], ``h`` and ``c`` float32 [layers, batch, hidden]  ->
``logits`` float32 [batch, vocab], ``h_out`` and ``c_out`` like ``h`` and ``c``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.jobs import TaskState

from .corpus import Vocabulary
from .sampling import log_softmax

INPUTS = ("token", "h", "c")
OUTPUTS = ("logits", "h_out", "c_out")
State = tuple[np.ndarray, np.ndarray]


def vocabulary_of(ctx: PluginContext) -> Vocabulary:
    """The model's characters: the manifest's ``extras.vocabulary`` or the card's."""
    chars = (ctx.model.extras.get("vocabulary") if ctx.model else None) or ctx.card().get(
        "vocabulary"
    )
    if not chars:
        raise JobError("the model has no vocabulary (card.json 'vocabulary' is missing)")
    try:
        return Vocabulary([str(c) for c in chars])
    except ValueError as exc:
        raise JobError(f"the model's vocabulary is unusable: {exc}") from None


class CharModel:
    """A step session plus its vocabulary, sizes checked against each other."""

    def __init__(self, session: Any, vocab: Vocabulary) -> None:
        self.session = session
        self.vocab = vocab
        self._outputs = list(OUTPUTS)  # built once: step() runs once per character
        shapes = session.input_shapes
        missing = [n for n in INPUTS if n not in shapes]
        if missing:
            raise JobError(f"not a character-LSTM step graph (no input {missing[0]!r})")
        layers, _, hidden = shapes["h"]
        if not (isinstance(layers, int) and isinstance(hidden, int)):
            raise JobError(f"the step graph's state has no fixed size: h is {list(shapes['h'])}")
        self.layers, self.hidden = layers, hidden
        # One call on a zero state: a vocabulary that does not fit the graph fails here, with
        # a message, instead of as an index error half-way through a text.
        logits, _ = self.step(np.zeros(1, np.int64), self.zero_state(1))
        if logits.shape[-1] != len(vocab):
            raise JobError(
                f"the graph predicts {logits.shape[-1]} characters but the vocabulary has "
                f"{len(vocab)}: card.json does not belong to this model"
            )

    @classmethod
    def from_context(cls, ctx: PluginContext) -> CharModel:
        return cls(ctx.session(), vocabulary_of(ctx))

    def zero_state(self, batch: int = 1) -> State:
        shape = (self.layers, batch, self.hidden)
        return np.zeros(shape, np.float32), np.zeros(shape, np.float32)

    def step(self, tokens: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """Logits for the next character of each row, and the new state."""
        feeds = {"token": tokens.astype(np.int64, copy=False), "h": state[0], "c": state[1]}
        logits, h, c = self.session.run(feeds, self._outputs)
        return logits, (h, c)

    def prefill(
        self,
        ids: np.ndarray,
        state: State,
        task: TaskState | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> tuple[np.ndarray | None, State, list[float]]:
        """Feed ``ids`` (one row) through the step graph.  Returns the logits after the last
        id, the state, and the probability the model gave each id after the first."""
        logits = None
        probs: list[float] = []
        for i, token in enumerate(ids):
            if logits is not None:
                probs.append(float(np.exp(log_softmax(logits[0])[token])))
            logits, state = self.step(np.array([token]), state)
            if task is not None and i % 64 == 0:
                task.check()
                if on_step is not None:
                    on_step(i)
        return logits, state, probs
