"""`gdl-studio eval music`: the model's validation loss and what its own samples look like
(numpy + ONNX Runtime).

- ``val_nll``: nats per token over every token after BOS of the validation pieces, each
  scored through the prefill graph (whole, or in windows when longer than the model's
  window: see :func:`sequence_nll`).  Chorale models: the valid split of
  Jsb16thSeparated (76 chorales; its JSON edition, beside the .npz: nothing is unpickled) in
  the serialised 16th-grid SATB form (S A T B per step, REST for silence), the form the
  published JSB numbers use.  Solo models: the MIDI files the card lists as held out.
  ``--data`` gives the .json (or folder) when it is not where the card says.
- ``valid_midi_share``: of ``pieces`` pieces sampled at temperature 1 with no grammar mask
  (the model alone), the share whose tokens decode to a MIDI file that writes, passes the
  studio's MIDI check, reads back with the same notes and has at least one note.
- ``grammar_error_ratio``: the share of those sampled tokens the grammar does not allow where
  they stand (the studio itself always samples under the grammar's mask).
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path
from typing import Any

import mido
import numpy as np

from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.midi_check import check_midi_bytes
from gdl_studio.core.runtime import sha256_file

from .jsb import json_twin, read_chorales
from .model import MusicModel
from .sampling import Sampler, log_softmax
from .tokenizers import BOS, BeatNote, ChoraleTokenizer, TokenError, Tokenizer, beat_notes


def sequence_nll(model: MusicModel, ids: list[int] | np.ndarray) -> tuple[float, int]:
    """Summed NLL (nats) of ``ids`` after BOS, and how many tokens that is.

    A piece longer than the model's window (its training crops) is scored as the studio
    generates it (``model.Stream``): through windows of ``window`` tokens, each new one
    starting half a window back on a cycle boundary, so every token is scored once with at
    least half a window before it — and the prefill graph never holds a whole long piece's
    attention (quadratic in its length: a 40,000-token organ work would need tens of GB)."""
    seq = np.array([BOS, *[int(t) for t in ids]], np.int64)
    window, period = model.window, model.tokenizer.period
    total, count = 0.0, 0
    start, scored = 0, 1  # the window's first index; the first index not yet scored
    while scored < len(seq):
        end = min(start + window, len(seq))
        logits, _ = model.prefill(seq[None, start : end - 1])
        logp = log_softmax(logits[0])
        idx = np.arange(scored, end)
        total -= float(logp[idx - start - 1, seq[idx]].sum())
        count += len(idx)
        scored = end
        start = end - window // 2
        start -= start % period  # index 0 is BOS, so this keeps every token's phase
    return total, count


def validation_pieces(card: dict[str, Any], tok: Tokenizer, data: Path | None) -> list[list[int]]:
    """The validation pieces as token ids (after BOS)."""
    info = card.get("data") or {}
    path = Path(data).expanduser() if data is not None else Path(info.get("path", ""))
    if isinstance(tok, ChoraleTokenizer):
        path = json_twin(path)  # the JSON edition of the .npz: nothing to unpickle
    if (not info.get("path") and data is None) or not path.exists():
        name = info.get("file")
        if name and isinstance(tok, ChoraleTokenizer):
            name = json_twin(Path(name)).name
        raise JobError(
            f"the validation data ({name or 'the training data'}) is not where the card says: "
            "pass --data with it"
        )
    if isinstance(tok, ChoraleTokenizer):
        try:
            return [tok.encode_grid(g) for g in read_chorales(path, ("valid",))["valid"]]
        except ValueError as exc:
            raise JobError(str(exc)) from None
    names = info.get("valid_files") or []
    files = [path / n for n in names] if path.is_dir() else []
    if not files or not all(f.is_file() for f in files):
        raise JobError(f"{path}: the held-out MIDI files of the card are not there")
    try:
        return [tok.encode_notes(beat_notes(mido.MidiFile(f, clip=True))) for f in files]
    except (OSError, ValueError, EOFError, TokenError) as exc:
        raise JobError(f"{path}: {exc}") from None


def decodes_to_valid_midi(tok: Tokenizer, ids: list[int]) -> bool:
    """Whether ``ids`` become a MIDI file that saves, passes the studio's checks and reads
    back with the same notes (at least one)."""
    try:
        notes = tok.decode_notes(ids)
        buf = io.BytesIO()
        tok.to_midi(ids).save(file=buf)
        data = buf.getvalue()
        check_midi_bytes(data)
        back = beat_notes(mido.MidiFile(file=io.BytesIO(data)))
    except (ValueError, OSError, EOFError, TokenError):
        return False

    def key(n: BeatNote) -> tuple[float, int, float]:
        return (round(n.start, 6), n.pitch, round(n.end, 6))

    return bool(notes) and sorted(map(key, notes)) == sorted(map(key, back))


def sample_batch(model: MusicModel, rows: int, n: int, seed: int) -> np.ndarray:
    """``rows`` pieces of ``n`` tokens at temperature 1, no mask, through the cache."""
    rng = np.random.default_rng(seed)
    sampler = Sampler(1.0)
    logits, cache = model.prefill(np.full((rows, 1), BOS, np.int64))
    last = logits[:, -1]
    out = np.zeros((rows, n), np.int64)
    for i in range(n):
        out[:, i] = sampler.choose(last, rng)
        if i + 1 < n:
            last, cache = model.step(out[:, i], cache)
    return out


def evaluate(
    ctx: PluginContext, data: Path | None = None, pieces: int = 100, bars: int = 8, seed: int = 0
) -> dict[str, Any]:
    t0 = time.perf_counter()
    model = MusicModel.from_context(ctx)
    tok = model.tokenizer
    card = ctx.card()
    valid = validation_pieces(card, tok, data)
    total, count = 0.0, 0
    for ids in valid:
        s, c = sequence_nll(model, ids)
        total, count = total + s, count + c
    nll = total / count
    n = bars * tok.steps_per_bar()
    samples = sample_batch(model, pieces, n, seed)
    errors = sum(tok.grammar_errors(row.tolist()) for row in samples)
    valid_midi = sum(decodes_to_valid_midi(tok, row.tolist()) for row in samples)
    src = Path(data) if data is not None else Path((card.get("data") or {}).get("path", ""))
    if isinstance(tok, ChoraleTokenizer):
        src = json_twin(src)
    out: dict[str, Any] = {
        "val_nll": round(nll, 5),
        "bits_per_token": round(nll / math.log(2), 5),
        "tokens_scored": count,
        "pieces_scored": len(valid),
        "split": "valid" if isinstance(tok, ChoraleTokenizer) else "held-out files",
        "data": str(src),
        "data_sha256": sha256_file(src) if src.is_file() else None,
        "valid_midi_share": round(valid_midi / pieces, 4),
        "grammar_error_ratio": round(errors / samples.size, 5),
        "sampled_pieces": pieces,
        "sampled_tokens_each": n,
        "tokenizer": tok.kind,
        "model_sha256": ctx.model.sha256 if ctx.model else None,
        "eval_seconds": round(time.perf_counter() - t0, 2),
    }
    if "val_nll" in card:
        out["card_val_nll"] = card["val_nll"]
    return out
