"""Export a trained denoiser (the EMA weights) as one ONNX graph with its card.json, and print
its manifest table.

    python -m gdl_studio_plugins.diffusion.train.export \\
        --checkpoint runs/diffusion-fashion/checkpoint.pt --out assets/diffusion/fashion-ddpm

Only the network is exported: ``(x, noise_variance, label) -> noise``.  The schedule and the
samplers are numpy code in the plugin, so the card and the manifest carry the schedule's
config.  The graph is checked in ONNX Runtime against torch at a batch size other than the one
traced (max abs difference <= 1e-4) before it replaces anything, and the torch module rebuilt
from the file's initializers alone (what ``gdl-studio bench diffusion`` times) must match it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from gdl_studio.core.runtime import sha256_file
from gdl_studio.training.cards import exporter_info, previous_card, training_record, write_card
from gdl_studio.training.checkpoints import load_checkpoint
from gdl_studio.training.errors import TrainError, fail
from gdl_studio.training.export import (
    check_signature,
    cpu_session,
    load_onnx_weights,
    max_abs_diff,
    onnx_export,
    staged,
)

from .models import UNet

PROG = "export"
TOLERANCE = 1e-4
TRACE_BATCH = 3
CHECK_BATCH = 5
SETTINGS = (
    "widths",
    "blocks",
    "attention",
    "dropout",
    "conditional",
    "label_drop",
    "schedule",
    "timesteps",
    "loss",
    "batch",
    "lr",
    "warmup",
    "ema",
    "flip",
    "seed",
)
NAMES = {"fashion": "Fashion-MNIST", "cifar10": "CIFAR-10"}


def torch_from_onnx(onnx_path: str | Path, architecture: dict[str, Any]) -> UNet:
    """The torch U-Net of an exported model, rebuilt from the card's ``architecture`` with the
    weights read from the ONNX file (no checkpoint needed), in eval mode."""
    model = UNet(**architecture)
    load_onnx_weights(model, onnx_path)
    return model


def example(arch: dict[str, Any], n: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    ch, size = arch["channels"], arch["size"]
    x = torch.randn(n, ch, size, size, generator=g)
    var = torch.rand(n, generator=g)
    label = torch.randint(0, arch["classes"] + 1, (n,), generator=g)
    return x, var, label


def export_graph(model: UNet, path: Path) -> dict[str, Any]:
    """Write ``path`` after checking it in ONNX Runtime; returns the exporter and the diff."""
    arch = dict(model.config)
    ch, size = arch["channels"], arch["size"]
    image = ["batch", ch, size, size]
    with staged(path) as tmp:
        kind = onnx_export(
            model,
            example(arch, TRACE_BATCH, 0),
            tmp,
            ["x", "noise_variance", "label"],
            ["noise"],
            prog=PROG,
        )
        session = cpu_session(tmp)
        check_signature(
            session,
            {
                "x": ("tensor(float)", image),
                "noise_variance": ("tensor(float)", ["batch"]),
                "label": ("tensor(int64)", ["batch"]),
            },
            {"noise": image},
        )
        x, var, label = example(arch, CHECK_BATCH, 1)
        with torch.no_grad():
            ref = model(x, var, label).numpy()
        (got,) = session.run(
            ["noise"], {"x": x.numpy(), "noise_variance": var.numpy(), "label": label.numpy()}
        )
        diff = max_abs_diff(got, ref)
        if not diff <= TOLERANCE:
            raise TrainError(f"ONNX Runtime and torch differ by {diff:.2e}")
        try:
            rebuilt = torch_from_onnx(tmp, arch)
        except ValueError as exc:
            raise TrainError(str(exc)) from None
        with torch.no_grad():
            again = rebuilt(x, var, label).numpy()
        if not max_abs_diff(again, got) <= TOLERANCE:
            raise TrainError("the network rebuilt from the ONNX initializers differs")
        os.replace(tmp, path)
    return {"exporter": exporter_info(kind), "onnx_vs_torch_max_abs_diff": diff}


def export(
    checkpoint: Path, out: Path, model_id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    """Export a train_diffusion checkpoint's EMA network into the folder ``out``."""
    ck = load_checkpoint(checkpoint)
    cfg = ck.get("config") or {}
    if "architecture" not in cfg or "ema" not in ck:
        raise TrainError(f"{checkpoint}: not a train_diffusion checkpoint")
    model = UNet(**cfg["architecture"])
    model.load_state_dict(ck["ema"])
    model.eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model_id = model_id or out.name
    info = export_graph(model, out / "model.onnx")
    sha = sha256_file(out / "model.onnx")
    card_path = out / "card.json"
    old = previous_card(card_path, sha)
    history = list(ck.get("history") or [])
    data = NAMES.get(cfg.get("data", ""), "images")
    card: dict[str, Any] = {
        "model": model_id,
        "name": name or f"{data}, DDPM U-Net" + (" (class-conditional)" if cfg["classes"] else ""),
        "kind": "diffusion",
        "architecture": dict(model.config),
        "schedule": {"kind": cfg["schedule"], "steps": cfg["timesteps"]},
        "dataset": cfg.get("data"),
        "data": cfg.get("data_info") or {},
        "classes": list(cfg.get("classes") or []),
        "training": training_record(
            ck, cfg, SETTINGS, last_test=history[-1] if history else {}, weights="EMA"
        ),
        **info,
        "sha256": sha,
        "metrics": old.get("metrics", {}),
    }
    for key in ("metrics_command", "metrics_date", "speed", "speed_command", "speed_date"):
        if key in old:
            card[key] = old[key]
    write_card(card_path, card)
    return card


def manifest_table(card: dict[str, Any], folder: str) -> str:
    """The [[models]] table for plugin.toml (paths relative to assets/diffusion/)."""
    arch = card["architecture"]
    image = json.dumps(["batch", arch["channels"], arch["size"], arch["size"]])
    lines = [
        "[[models]]",
        f'id = "{card["model"]}"',
        f"name = {json.dumps(card['name'])}",
        f'file = "{folder}/model.onnx"',
        f'sha256 = "{card["sha256"]}"',
        f'card = "{folder}/card.json"',
        "[models.inputs]",
        f"x = {image}",
        'noise_variance = ["batch"]',
        'label = ["batch"]',
        "[models.outputs]",
        f"noise = {image}",
        "[models.extras]",
        f'dataset = "{card["dataset"]}"',
        f"size = {arch['size']}",
        f"classes = {json.dumps(card['classes'])}",
        f"schedule = {json.dumps(card['schedule']['kind'])}",
        f"timesteps = {card['schedule']['steps']}",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Export a diffusion denoiser to ONNX.")
    p.add_argument("--checkpoint", required=True, type=Path, help="a train_diffusion checkpoint")
    p.add_argument("--out", required=True, type=Path, help="the model folder, assets/diffusion/ID")
    p.add_argument("--model-id", help="default: the name of the --out folder")
    p.add_argument("--name", help="the model's display name")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        card = export(args.checkpoint, args.out, args.model_id, args.name)
    except TrainError as exc:
        fail(PROG, str(exc))
    print(
        f"wrote {args.out}/model.onnx and card.json ({card['model']!r}; max |onnx - torch| "
        f"{card['onnx_vs_torch_max_abs_diff']:.2e})"
    )
    print("\n# plugin.toml:\n" + manifest_table(card, Path(args.out).name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
