"""Export a trained generator or evaluation classifier to one ONNX file with its card.json.

    python -m gdl_studio_plugins.gan.train.export generator \\
        --checkpoint runs/fashion-cgan/checkpoint.pt --out assets/gan/fashion-cgan/model.onnx
    python -m gdl_studio_plugins.gan.train.export classifier \\
        --checkpoint runs/fashion-classifier/classifier.pt \\
        --out assets/eval/fashion-classifier/model.onnx

The graph is checked against torch in ONNX Runtime before it replaces anything (max abs
difference <= 1e-4 on a batch size other than the one traced, so the dynamic batch is tested
too), and ``torch_generator_from_onnx`` must rebuild the same generator from the file.
"""

from __future__ import annotations

import argparse
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

from .models import Classifier, Generator

PROG = "export"
TOLERANCE = 1e-4
TRACE_BATCH = 3  # traced at 3, checked at CHECK_BATCH: a batch size baked in would show
CHECK_BATCH = 7
# The train_gan settings a generator's card records.
GENERATOR_SETTINGS = (
    "loss",
    "aux_weight",
    "label_smoothing",
    "label_noise",
    "d_dropout",
    "d_norm",
    "n_critic",
    "gp_weight",
    "lr",
    "beta1",
    "beta2",
    "batch",
    "ema",
    "seed",
)


def torch_generator_from_onnx(onnx_path: str | Path, card: dict[str, Any]) -> Generator:
    """The torch Generator of an exported model, rebuilt from card.json's ``architecture`` with
    the weights read from the ONNX file's initializers (no checkpoint needed), in eval mode.

    Lets ``gdl-studio bench`` time torch eager on exactly the generator the app runs."""
    model = Generator(**card["architecture"])
    load_onnx_weights(model, onnx_path, optional=("num_batches_tracked",))
    return model


def _card(
    out: Path, model_id: str | None, kind: str, arch: dict[str, Any], cfg: dict[str, Any]
) -> dict[str, Any]:
    """The fields every card of this plugin starts with (``classes`` filled in by the
    caller)."""
    return {
        "model": model_id or out.parent.name,
        "kind": kind,
        "architecture": arch,
        "dataset": cfg.get("data"),
        "data": cfg.get("data_info") or {},
        "classes": list(cfg.get("classes") or []),
    }


def _write_card(out: Path, card: dict[str, Any], exporter: str, diff: float) -> dict[str, Any]:
    """Complete ``card`` for the model now at ``out`` (the check, the exporter, the hash and
    the metrics of the card before, kept only when the model file did not change) and write
    it beside as card.json."""
    sha = sha256_file(out)
    card_path = out.with_name("card.json")
    card.update(
        {
            "onnx_vs_torch_max_abs_diff": diff,
            "exporter": exporter_info(exporter),
            "sha256": sha,
            "metrics": dict(previous_card(card_path, sha).get("metrics") or {}),
        }
    )
    write_card(card_path, card)
    return card


def export_generator(
    checkpoint: Path, out: Path, model_id: str | None = None, use_ema: bool = True
) -> dict[str, Any]:
    """Export the (EMA) generator of a train_gan checkpoint; returns the card."""
    ck = load_checkpoint(checkpoint)
    cfg = ck.get("config") or {}
    if "generator" not in cfg or "generator" not in ck:
        raise TrainError(f"{checkpoint}: not a train_gan checkpoint")
    model = Generator(**cfg["generator"])
    weights = ck["ema"] if use_ema and ck.get("ema") is not None else ck["generator"]
    model.load_state_dict(weights)
    model.eval()
    arch = dict(model.config)
    conditional = arch["n_classes"] > 0
    g = torch.Generator().manual_seed(0)

    def inputs(n: int) -> tuple[torch.Tensor, ...]:
        z = torch.randn(n, arch["latent_dim"], generator=g)
        return (z, torch.arange(n) % arch["n_classes"]) if conditional else (z,)

    names = ["z", "label"] if conditional else ["z"]
    out = Path(out)
    with staged(out) as tmp:
        exporter = onnx_export(model, inputs(TRACE_BATCH), tmp, names, ["image"], prog=PROG)
        session = cpu_session(tmp)
        size, ch = arch["size"], arch["channels"]
        expected_in = {"z": ("tensor(float)", ["batch", arch["latent_dim"]])}
        if conditional:
            expected_in["label"] = ("tensor(int64)", ["batch"])
        check_signature(session, expected_in, {"image": ["batch", ch, size, size]})
        args = inputs(CHECK_BATCH)
        with torch.no_grad():
            ref = model(*args).numpy()
        (got,) = session.run(["image"], {n: a.numpy() for n, a in zip(names, args, strict=True)})
        diff = max_abs_diff(got, ref)
        if not diff <= TOLERANCE:
            raise TrainError(f"ONNX Runtime and torch differ by {diff:.2e} (> {TOLERANCE})")
        try:
            rebuilt = torch_generator_from_onnx(tmp, {"architecture": arch})
        except ValueError as exc:
            raise TrainError(str(exc)) from exc
        with torch.no_grad():
            again = rebuilt(*args).numpy()
        if not max_abs_diff(again, got) <= TOLERANCE:
            raise TrainError("the generator rebuilt from the ONNX initializers does not match")
        os.replace(tmp, out)
    card = _card(out, model_id, "generator", arch, cfg)
    card.update(
        {
            "classes": card["classes"] if conditional else [],
            "conditional": conditional,
            "training": training_record(
                ck, cfg, GENERATOR_SETTINGS, ema=bool(use_ema and ck.get("ema") is not None)
            ),
        }
    )
    return _write_card(out, card, exporter, diff)


def export_classifier(checkpoint: Path, out: Path, model_id: str | None = None) -> dict[str, Any]:
    """Export a train_classifier checkpoint; returns the card."""
    ck = load_checkpoint(checkpoint)
    cfg = ck.get("config") or {}
    if "architecture" not in cfg or "model" not in ck:
        raise TrainError(f"{checkpoint}: not a train_classifier checkpoint")
    model = Classifier(**cfg["architecture"])
    model.load_state_dict(ck["model"])
    model.eval()
    arch = dict(model.config)
    size, ch = arch["size"], arch["channels"]
    g = torch.Generator().manual_seed(0)

    def inputs(n: int) -> tuple[torch.Tensor]:
        return (torch.rand(n, ch, size, size, generator=g) * 2 - 1,)

    out = Path(out)
    with staged(out) as tmp:
        exporter = onnx_export(
            model, inputs(TRACE_BATCH), tmp, ["image"], ["logits", "features"], prog=PROG
        )
        session = cpu_session(tmp)
        check_signature(
            session,
            {"image": ("tensor(float)", ["batch", ch, size, size])},
            {"logits": ["batch", arch["n_classes"]], "features": ["batch", arch["feature_dim"]]},
        )
        (x,) = inputs(CHECK_BATCH)
        with torch.no_grad():
            logits, features = model(x)
        got = session.run(["logits", "features"], {"image": x.numpy()})
        diff = max(max_abs_diff(got[0], logits.numpy()), max_abs_diff(got[1], features.numpy()))
        if not diff <= TOLERANCE:
            raise TrainError(f"ONNX Runtime and torch differ by {diff:.2e} (> {TOLERANCE})")
        os.replace(tmp, out)
    card = _card(out, model_id, "classifier", arch, cfg)
    card.update(
        {
            "input_range": [-1.0, 1.0],
            "training": {
                "command": cfg.get("command", ""),
                "steps": int(cfg.get("steps", 0)),
                "epochs": int(cfg.get("epochs", 0)),
                "seconds": round(float(ck.get("seconds", 0.0)), 1),
            },
            "test_accuracy": round(float(ck.get("test_accuracy", float("nan"))), 4),
        }
    )
    return _write_card(out, card, exporter, diff)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Export to ONNX with card.json.")
    sub = p.add_subparsers(dest="what", required=True)
    for what, help_text in (
        ("generator", "a train_gan checkpoint.pt"),
        ("classifier", "a train_classifier classifier.pt"),
    ):
        s = sub.add_parser(what, help=f"export {help_text}")
        s.add_argument("--checkpoint", required=True, type=Path)
        s.add_argument("--out", required=True, type=Path, help=".../<model-id>/model.onnx")
        s.add_argument("--model-id", help="default: the name of the --out folder")
        if what == "generator":
            s.add_argument("--no-ema", action="store_true", help="the raw generator weights")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.what == "generator":
            card = export_generator(args.checkpoint, args.out, args.model_id, not args.no_ema)
        else:
            card = export_classifier(args.checkpoint, args.out, args.model_id)
    except TrainError as exc:
        fail(PROG, str(exc))
    print(
        f"wrote {args.out} ({card['kind']} {card['model']!r}, {card['exporter']['kind']} "
        f"exporter, max |onnx - torch| = {card['onnx_vs_torch_max_abs_diff']:.2e})"
    )
    print(f"sha256 {card['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
