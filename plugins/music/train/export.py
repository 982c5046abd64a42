"""Export a trained music transformer as two ONNX graphs (prefill and one-token step, sharing
a key/value cache) with its card.json.

    python -m gdl_studio_plugins.music.train.export \\
        --checkpoint runs/chorales/best.pt --out assets/music/jsb-chorales

Both graphs are checked in ONNX Runtime before they replace anything: the prefill graph
against torch's own forward at a batch size and length other than the traced ones, and a
prefill followed by one step per token (each step's new key and value appended to the
cache, as the plugin does) against the full forward of the same sequence.  Each
graph is one self-contained file.  Prints the ``[[models]]`` table for plugin.toml.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gdl_studio_plugins.music.tokenizers import tokenizer_from_config

from gdl_studio.core.runtime import sha256_file
from gdl_studio.training.cards import exporter_info, previous_card, training_record, write_card
from gdl_studio.training.checkpoints import load_checkpoint
from gdl_studio.training.errors import TrainError, fail
from gdl_studio.training.export import OPSET, cpu_session, max_abs_diff, quiet, staged

from .model import MusicTransformer, PrefillGraph, StepGraph, cache_names
from .train import SETTINGS

PROG = "export"
TOLERANCE = 1e-4
TRACE_BATCH, TRACE_TIME, TRACE_PAST = 2, 9, 7  # sizes baked into a graph would show
MAX = 1 << 16
MEASURED = ("metrics", "metrics_command", "metrics_date", "speed", "speed_command", "speed_date")


def export_graphs(model: MusicTransformer, prefill_path: Path, step_path: Path) -> str:
    """Write both graphs (dynamo exporter; batch, time and past length dynamic).  Every
    weight stays an initializer named by its state-dict key (``model.<name>``), so the torch
    module can be rebuilt from either file."""
    cfg = model.config
    layers, kv, dh = cfg["layers"], cfg["kv_heads"], model.head_dim
    batch = torch.export.Dim("batch", min=1, max=MAX)
    time_ = torch.export.Dim("time", min=1, max=MAX)
    past = torch.export.Dim("past", min=1, max=MAX)
    common: dict[str, Any] = {
        "dynamo": True, "external_data": False, "optimize": False, "verbose": False,
        "opset_version": OPSET,
    }  # fmt: skip
    tokens = torch.randint(0, cfg["vocab_size"], (TRACE_BATCH, TRACE_TIME))
    cache = [torch.zeros(TRACE_BATCH, kv, TRACE_PAST, dh) for _ in range(2 * layers)]
    with quiet():
        torch.onnx.export(
            PrefillGraph(model), (tokens,), str(prefill_path),
            input_names=["tokens"], output_names=["logits", *cache_names(layers)],
            dynamic_shapes={"tokens": {0: batch, 1: time_}}, **common,
        )  # fmt: skip
        torch.onnx.export(
            StepGraph(model), (tokens[:, 0], *cache), str(step_path),
            input_names=["token", *cache_names(layers, "past_")],
            output_names=["logits", *cache_names(layers)],
            dynamic_shapes={"token": {0: batch}, "cache": tuple({0: batch, 2: past} for _ in cache)},  # noqa: E501
            **common,
        )  # fmt: skip
    return "dynamo"


def check_against_torch(model: MusicTransformer, prefill_path: Path, step_path: Path) -> float:
    """Max |ONNX Runtime - torch| of the logits: the prefill graph on 3 x 45 random tokens,
    and a prefill of 20 tokens plus 25 steps against the full forward."""
    pre, step = cpu_session(prefill_path), cpu_session(step_path)
    layers = model.config["layers"]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config["vocab_size"], (3, 45), generator=g)
    with torch.no_grad():
        full = model(ids).numpy()
    logits, *cache = pre.run(None, {"tokens": ids.numpy()})
    diff = max_abs_diff(logits, full)
    logits, *cache = pre.run(None, {"tokens": ids[:, :20].numpy()})
    steps = [logits]
    names = cache_names(layers, "past_")
    for t in range(20, 45):
        feeds = {"token": ids[:, t].numpy(), **dict(zip(names, cache, strict=True))}
        out, *new = step.run(None, feeds)
        cache = [np.concatenate([c, n], axis=2) for c, n in zip(cache, new, strict=True)]
        steps.append(out[:, None])
    diff = max(diff, max_abs_diff(np.concatenate(steps, axis=1), full))
    if not diff <= TOLERANCE:
        raise TrainError(f"ONNX Runtime and torch differ by {diff:.2e} (> {TOLERANCE})")
    return diff


def export(
    checkpoint: Path,
    out_dir: Path,
    model_id: str | None = None,
    about_data: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Export a train.py checkpoint to ``out_dir``/prefill.onnx and step.onnx; returns the
    card (also written there as card.json).  ``about_data`` (name, source, licence) completes
    the card's record of a folder of MIDI files, which the trainer knows only by its path."""
    ck = load_checkpoint(checkpoint)
    cfg = ck.get("config") or {}
    if "architecture" not in cfg or "model" not in ck or "tokenizer" not in cfg:
        raise TrainError(f"{checkpoint}: not a checkpoint of the music trainer")
    model = MusicTransformer(**cfg["architecture"])
    model.load_state_dict(ck["model"])
    model.eval()
    tok = tokenizer_from_config(cfg["tokenizer"])
    out_dir = Path(out_dir)
    prefill_out, step_out = out_dir / "prefill.onnx", out_dir / "step.onnx"
    with staged(prefill_out, ".tmp.onnx") as p_tmp, staged(step_out, ".tmp.onnx") as s_tmp:
        exporter = export_graphs(model, p_tmp, s_tmp)
        diff = check_against_torch(model, p_tmp, s_tmp)
        os.replace(p_tmp, prefill_out)
        os.replace(s_tmp, step_out)
    files = {"prefill.onnx": sha256_file(prefill_out), "step.onnx": sha256_file(step_out)}
    sha = "+".join(files[k] for k in sorted(files))
    history = ck.get("val_history") or []
    card_path = out_dir / "card.json"
    card = {
        "model": model_id or out_dir.name,
        "kind": "music-transformer",
        "architecture": dict(model.config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokenizer": tok.config(),
        "window": int(cfg.get("max_len", 1024)),
        "data": {**(cfg.get("data_info") or {}), **(about_data or {})},
        "training": training_record(ck, cfg, SETTINGS),
        "val_history": history,
        "val_nll_torch": round(min(v["val_nll"] for v in history), 5) if history else None,
        "val_nll_split": (
            "JSB valid split (76 chorales), serialised 16th-grid SATB, nats per token after BOS"
            if tok.kind == "chorale"
            else "held-out MIDI files, nats per token after BOS"
        ),
        "onnx_vs_torch_max_abs_diff": diff,
        "exporter": exporter_info(exporter),
        "files": files,
        "sha256": sha,
        "metrics": {},
    }
    old = previous_card(card_path, sha)
    card.update({k: old[k] for k in MEASURED if k in old})
    write_card(card_path, card)
    return card


def manifest_table(card: dict[str, Any], out_dir: Path, default: bool = False) -> str:
    """The [[models]] entry for plugin.toml (files relative to assets/music/)."""
    a = card["architecture"]
    kv, dh, layers = a["kv_heads"], a["d_model"] // a["heads"], a["layers"]
    name = out_dir.name
    cache_in = [f'past_{n} = ["batch", {kv}, "past", {dh}]' for n in cache_names(layers)]
    cache_out = [f'{n} = ["batch", {kv}, "time", {dh}]' for n in cache_names(layers)]
    step_out = [f'{n} = ["batch", {kv}, 1, {dh}]' for n in cache_names(layers)]
    return "\n".join(
        [
            "[[models]]",
            f'id = "{card["model"]}"',
            f'name = "{card["data"].get("name", card["model"])} transformer '
            f'{layers}x{a["d_model"]}"',
            f'card = "{name}/card.json"',
            *(["default = true"] if default else []),
            "[models.graphs.prefill]",
            f'file = "{name}/prefill.onnx"',
            f'sha256 = "{card["files"]["prefill.onnx"]}"',
            "[models.graphs.prefill.inputs]",
            'tokens = ["batch", "time"]',
            "[models.graphs.prefill.outputs]",
            f'logits = ["batch", "time", {a["vocab_size"]}]',
            *cache_out,
            "[models.graphs.step]",
            f'file = "{name}/step.onnx"',
            f'sha256 = "{card["files"]["step.onnx"]}"',
            "threads = 2",  # fastest per token (benchmarks/step_threads.py)
            "[models.graphs.step.inputs]",
            'token = ["batch"]',
            *cache_in,
            "[models.graphs.step.outputs]",
            f'logits = ["batch", {a["vocab_size"]}]',
            *step_out,
        ]
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Export a music transformer to ONNX.")
    p.add_argument("--checkpoint", required=True, type=Path, help="a run's best.pt")
    p.add_argument("--out", required=True, type=Path, help=".../assets/music/<model-id>")
    p.add_argument("--model-id", help="default: the name of the --out folder")
    p.add_argument("--default", action="store_true", help="mark the printed [[models]] default")
    for field in ("name", "source", "licence"):
        p.add_argument(f"--data-{field}", help=f"the training data's {field}, for the card")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        about = {k: getattr(args, f"data_{k}") for k in ("name", "source", "licence")}
        card = export(
            args.checkpoint, args.out, args.model_id, {k: v for k, v in about.items() if v}
        )
    except (TrainError, ValueError) as exc:
        fail(PROG, str(exc))
    print(
        f"wrote {args.out}/prefill.onnx and step.onnx ({card['exporter']['kind']} exporter, "
        f"max |onnx - torch| = {card['onnx_vs_torch_max_abs_diff']:.2e})"
    )
    print(f"\nAdd to plugins/music/plugin.toml:\n\n{manifest_table(card, args.out, args.default)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
