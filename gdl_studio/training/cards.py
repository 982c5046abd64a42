"""card.json, the file beside every exported model that says what it is and how it was made:
its training record, the exporter, and measurements (``gdl-studio eval``/``bench``) that stay
while the model file does not change."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from gdl_studio.training.export import OPSET


def exporter_info(kind: str, opset: int = OPSET) -> dict[str, Any]:
    """card.json's ``exporter`` entry: which exporter, the opset and the torch version."""
    return {"kind": kind, "opset": opset, "torch": torch.__version__}


def training_record(
    ck: Mapping[str, Any], cfg: Mapping[str, Any], settings: Sequence[str], **extra: Any
) -> dict[str, Any]:
    """card.json's ``training`` entry for a trainer's checkpoint ``ck`` with config ``cfg``:
    the command and the resumes, how long it trained, on how many processes, ``extra``, where
    its first weights came from (``init``, for a run started with ``--init``) and the
    ``settings`` (config keys) that shaped it."""
    return {
        "command": cfg.get("command", ""),
        "resumed_with": list(ck.get("commands", []))[1:],
        "steps": int(ck["step"]),
        "epochs": round(float(ck["epoch"]), 3),
        "seconds": round(float(ck["seconds"]), 1),
        "processes": int(ck.get("world_size", 1)),
        **extra,
        **({"init": cfg["init"]} if cfg.get("init") else {}),
        "settings": {k: cfg[k] for k in settings if k in cfg},
    }


def previous_card(card_path: Path, sha256: str) -> dict[str, Any]:
    """The card already at ``card_path`` when it describes the same model file (same
    sha256), else {}: what was measured on a model stays while the file does not change."""
    try:
        old = json.loads(Path(card_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return old if isinstance(old, dict) and old.get("sha256") == sha256 else {}


def write_card(card_path: Path, card: Mapping[str, Any]) -> None:
    """Write card.json (indented, UTF-8) through a temporary name."""
    card_path = Path(card_path)
    tmp = card_path.with_name(card_path.name + ".tmp")
    tmp.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, card_path)
