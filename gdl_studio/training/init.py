"""``--init``: start a new training run from trained weights instead of random ones.

The weights come from a model folder (card.json beside the exported graph, as a plugin's
``export`` writes it: a shipped model or one of the user's) or from a run's checkpoint
(best.pt, checkpoint.pt).  The run takes that model's architecture; the plugin checks that
the rest (a tokenizer, a vocabulary) fits its data.  The card of the model it becomes
records where the weights came from (:attr:`Init.provenance`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoints import load_checkpoint
from .errors import TrainError


@dataclass
class Init:
    source: Path
    architecture: dict[str, Any]
    state: dict[str, torch.Tensor]
    record: dict[str, Any]  # the card (model folder) or the checkpoint's config
    provenance: dict[str, Any]


def read_init(
    source: Path | str,
    kind: str,
    graph: str,
    from_onnx: Callable[[Path, dict[str, Any]], nn.Module],
    weights: str = "model",
) -> Init:
    """The weights at ``source``: a folder with card.json (its ``kind`` must be ``kind``)
    and the ``graph`` file, rebuilt into torch by ``from_onnx(path, card)``; or a checkpoint
    whose config has an ``architecture`` (its ``weights`` entry: "ema" where the trainer
    exports its EMA copy).  Anything else is a one-line :class:`TrainError`."""
    source = Path(source).expanduser().resolve()
    if source.is_dir():
        card_path, onnx_path = source / "card.json", source / graph
        if not card_path.is_file() or not onnx_path.is_file():
            raise TrainError(f"--init {source}: no card.json and {graph} there")
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TrainError(f"--init {card_path}: not readable JSON ({exc})") from None
        if not isinstance(card, dict) or card.get("kind") != kind or "architecture" not in card:
            raise TrainError(f"--init {source}: not a {kind} model's folder")
        try:
            state = from_onnx(onnx_path, card).state_dict()
        except (ValueError, TypeError) as exc:
            raise TrainError(f"--init {onnx_path}: {exc}") from None
        about = {"model": card.get("model"), "sha256": card.get("sha256"),
                 "training": card.get("training")}  # fmt: skip
        return Init(source, dict(card["architecture"]), state, card, {"from": str(source), **about})
    ck = load_checkpoint(source)
    cfg = ck.get("config") if isinstance(ck, dict) else None
    if not isinstance(cfg, dict) or "architecture" not in cfg or weights not in ck:
        raise TrainError(f"--init {source}: not a checkpoint of this trainer")
    about = {"checkpoint_step": int(ck.get("step", 0)), "command": cfg.get("command")}
    return Init(source, dict(cfg["architecture"]), ck[weights], cfg, {"from": str(source), **about})


def take_architecture(
    cfg: dict[str, Any],
    explicit: Mapping[str, Any],
    architecture: Mapping[str, Any],
    keys: Iterable[str],
) -> None:
    """Set ``cfg``'s architecture ``keys`` to the weights'; one the user gave differently
    (``explicit``: the options given on the command line) is refused."""
    keys = list(keys)
    differ = [
        f"--{k.replace('_', '-')} {explicit[k]} (the weights have {architecture.get(k)})"
        for k in keys
        if k in explicit and explicit[k] != architecture.get(k)
    ]
    if differ:
        raise TrainError("--init fixes the architecture; these differ: " + "; ".join(differ))
    cfg.update({k: architecture[k] for k in keys})


def load_state(model: nn.Module, init: Init) -> None:
    """Put the weights into ``model`` (built from :attr:`Init.architecture`)."""
    try:
        model.load_state_dict(init.state)
    except RuntimeError as exc:
        raise TrainError(f"--init {init.source}: the weights do not fit ({exc})") from None
