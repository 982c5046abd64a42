"""`gdl-studio eval text`: cross-entropy in nats per character of the chosen model, on its own
validation split (the last 10% of its training file) or on a whole other file (numpy + ONNX
Runtime).

Which one is measured follows from the file: without ``--data`` the training file the card
names (where it is on this computer); with ``--data FILE`` the validation split when FILE is
the training file (same sha256), else the whole of FILE."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.jobs import TaskState
from gdl_studio.core.runtime import sha256_file

from .corpus import (
    EVAL_BURN,
    CorpusError,
    default_streams,
    eval_windows,
    read_text,
    split_point,
    window_arrays,
)
from .model import CharModel
from .sampling import log_softmax


def mean_nll(
    model: CharModel,
    ids: np.ndarray,
    streams: int | None = None,
    burn: int = EVAL_BURN,
    task: TaskState | None = None,
) -> tuple[float, int]:
    """Mean negative log-likelihood (nats) of every id after the first, given those before
    it, scored in ``streams`` parallel rows (see ``corpus.eval_windows``); and the number of
    characters scored.  The step graph is called once per time step for all rows."""
    if len(ids) < 2:
        raise JobError("the text is too short to score (fewer than 2 characters)")
    windows = eval_windows(len(ids), streams or default_streams(len(ids)), burn)
    x, y, mask = window_arrays(ids, windows)
    rows = np.arange(len(x))
    state = model.zero_state(len(x))
    total = 0.0
    for j in range(x.shape[1]):
        logits, state = model.step(x[:, j], state)
        m = mask[:, j]
        if m.any():
            total -= float((log_softmax(logits)[rows, y[:, j]] * m).sum())
        if task is not None and j % 64 == 0:
            task.check()
            task.progress(j / x.shape[1], "scoring")
    count = int(mask.sum())
    return total / count, count


def training_file(card: dict[str, Any]) -> Path:
    """The model's training file as the card records it, if it is here unchanged."""
    info = card.get("data") or {}
    path = Path(info.get("path", ""))
    if info.get("path") and path.is_file() and sha256_file(path) == info.get("sha256"):
        return path
    name = info.get("file") or "its training file"
    raise JobError(
        f"the validation split needs {name} (sha256 {str(info.get('sha256', '?'))[:12]}…), "
        "which is not where the card says: pass --data with it, or --data any other text "
        "file to score all of that"
    )


def evaluate(
    ctx: PluginContext, data: Path | None = None, streams: int | None = None, burn: int = EVAL_BURN
) -> dict[str, Any]:
    t0 = time.perf_counter()
    model = CharModel.from_context(ctx)
    card = ctx.card()
    info = card.get("data") or {}
    path = Path(data).expanduser() if data is not None else training_file(card)
    if not path.is_file():
        raise JobError(f"{path}: no such file")
    digest = sha256_file(path)
    own = digest == info.get("sha256")
    out: dict[str, Any] = {"data": str(path), "data_sha256": digest}
    try:
        if own:  # read exactly as training did, so the split falls at the same character
            text = read_text(
                path, info.get("encoding", "utf-8"), info.get("decode_errors", "strict")
            )
        else:
            text = read_text(path, hint="save it as UTF-8 to score it")
    except CorpusError as exc:
        raise JobError(str(exc)) from None
    if own:
        ids = model.vocab.encode(text).ids
        ids = ids[split_point(len(ids)) :]
        out["split"] = "val"
        out["split_rule"] = "last 10% of the training file (first 90% train)"
    else:
        enc = model.vocab.encode(text)
        ids = enc.ids
        out["split"] = "whole"
        out["split_rule"] = "the whole file (not the model's training file)"
        out["mapped_chars"] = {a: b for a, b in sorted(enc.mapped.items())}
        out["dropped_chars"] = sum(enc.dropped.values())
    rows = streams or default_streams(len(ids))
    nll, count = mean_nll(model, ids, rows, burn)
    out.update(
        {
            "val_nll": round(nll, 5),
            "bits_per_char": round(nll / math.log(2), 5),
            "perplexity": round(math.exp(nll), 4),
            "chars_scored": count,
            "rows": rows,
            "burn_in": burn,
            "model_sha256": ctx.model.sha256 if ctx.model else None,
            "eval_seconds": round(time.perf_counter() - t0, 2),
        }
    )
    if "val_nll" in card:
        out["card_val_nll"] = card["val_nll"]
    return out
