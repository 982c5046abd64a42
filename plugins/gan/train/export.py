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
import contextlib
import hashlib
import inspect
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .common import TrainError, fail, load_checkpoint
from .models import Classifier, Generator

PROG = "export"
OPSET = 18
TOLERANCE = 1e-4
TRACE_BATCH = 3  # traced at 3, checked at CHECK_BATCH: a batch size baked in would show
CHECK_BATCH = 7


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def onnx_export(
    model: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
) -> str:
    """Export with a dynamic batch to one self-contained file; returns the exporter used.

    The torch.export-based exporter is tried first; the TorchScript one is the fallback.
    ``optimize=False`` keeps every parameter as an initializer named after its state-dict key
    (the optimiser folds batch norm into the convolutions and merges equal tensors), which
    ``torch_generator_from_onnx`` relies on; ONNX Runtime does those fusions itself at load.
    """
    batch = torch.export.Dim("batch", min=1, max=65536)
    arg_names = _forward_arg_names(model, len(args))
    try:
        with _quiet():
            torch.onnx.export(
                model,
                args,
                str(path),
                dynamo=True,
                external_data=False,
                optimize=False,
                verbose=False,
                opset_version=OPSET,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes={name: {0: batch} for name in arg_names},
            )
        return "dynamo"
    except Exception as exc:  # the new exporter fails in many ways; the old one may not
        print(
            f"{PROG}: the dynamo exporter failed ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); using the TorchScript "
            "exporter",
            file=sys.stderr,
        )
    with _quiet():
        torch.onnx.export(
            model,
            args,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes={n: {0: "batch"} for n in input_names + output_names},
            do_constant_folding=False,
        )
    return "torchscript"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' chatter (missing torchvision ops, deprecations, renamed axes):
    what matters is checked against ONNX Runtime afterwards."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _forward_arg_names(model: nn.Module, n: int) -> list[str]:
    params = list(inspect.signature(model.forward).parameters)
    return params[:n]


def ort_session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def check_signature(
    session: Any, inputs: dict[str, tuple[str, list[Any]]], outputs: dict[str, list[Any]]
) -> None:
    """The graph's names, element types and fixed dimensions are what the app expects."""
    real_in = {i.name: i for i in session.get_inputs()}
    if set(real_in) != set(inputs):
        raise TrainError(f"the graph's inputs are {sorted(real_in)}, expected {sorted(inputs)}")
    for name, (dtype, shape) in inputs.items():
        got = real_in[name]
        if got.type != dtype or _fixed(got.shape) != _fixed(shape):
            raise TrainError(f"input {name!r} is {got.type} {got.shape}, expected {dtype} {shape}")
    real_out = {o.name: o for o in session.get_outputs()}
    if set(real_out) != set(outputs):
        raise TrainError(f"the graph's outputs are {sorted(real_out)}, expected {sorted(outputs)}")
    for name, shape in outputs.items():
        if _fixed(real_out[name].shape) != _fixed(shape):
            raise TrainError(f"output {name!r} has shape {real_out[name].shape}, expected {shape}")


def _fixed(shape: list[Any]) -> list[int | None]:
    """Fixed dimensions as ints, symbolic ones (the batch) as None."""
    return [d if isinstance(d, int) else None for d in shape]


def _initializers(path: Path) -> dict[str, np.ndarray]:
    """The graph's initializers by name, also under the names of Identity nodes that forward
    them (the TorchScript exporter merges equal tensors that way)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    out = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in out:
            out[node.output[0]] = out[node.input[0]]
    return out


def torch_generator_from_onnx(onnx_path: str | Path, card: dict[str, Any]) -> Generator:
    """The torch Generator of an exported model, rebuilt from card.json's ``architecture`` with
    the weights read from the ONNX file's initializers (no checkpoint needed), in eval mode.

    Lets ``gdl-studio bench`` time torch eager on exactly the generator the app runs."""
    model = Generator(**card["architecture"])
    tensors = _initializers(Path(onnx_path))
    state = model.state_dict()
    missing = [k for k in state if k not in tensors and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{onnx_path}: no initializers for {', '.join(missing)}")
    loaded: dict[str, torch.Tensor] = {}
    for key, ref in state.items():
        if key in tensors:
            value = torch.from_numpy(np.array(tensors[key], copy=True))
            if value.shape != ref.shape:
                raise ValueError(
                    f"{onnx_path}: {key} is {tuple(value.shape)}, the architecture needs "
                    f"{tuple(ref.shape)}"
                )
            loaded[key] = value.to(ref.dtype)
    model.load_state_dict(loaded, strict=False)
    return model.eval()


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _kept_metrics(card_path: Path, sha: str) -> dict[str, Any]:
    """The metrics of an existing card, kept only when the model file did not change."""
    try:
        old = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return dict(old.get("metrics") or {}) if old.get("sha256") == sha else {}


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
        exporter = onnx_export(model, inputs(TRACE_BATCH), tmp, names, ["image"])
        session = ort_session(tmp)
        size, ch = arch["size"], arch["channels"]
        expected_in = {"z": ("tensor(float)", ["batch", arch["latent_dim"]])}
        if conditional:
            expected_in["label"] = ("tensor(int64)", ["batch"])
        check_signature(session, expected_in, {"image": ["batch", ch, size, size]})
        args = inputs(CHECK_BATCH)
        with torch.no_grad():
            ref = model(*args).numpy()
        (got,) = session.run(["image"], {n: a.numpy() for n, a in zip(names, args, strict=True)})
        diff = _max_diff(got, ref)
        if not diff <= TOLERANCE:
            raise TrainError(f"ONNX Runtime and torch differ by {diff:.2e} (> {TOLERANCE})")
        try:
            rebuilt = torch_generator_from_onnx(tmp, {"architecture": arch})
        except ValueError as exc:
            raise TrainError(str(exc)) from exc
        with torch.no_grad():
            again = rebuilt(*args).numpy()
        if not _max_diff(again, got) <= TOLERANCE:
            raise TrainError("the generator rebuilt from the ONNX initializers does not match")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    sha = sha256_file(out)
    card_path = out.with_name("card.json")
    card = {
        "model": model_id or out.parent.name,
        "kind": "generator",
        "architecture": arch,
        "dataset": cfg.get("data"),
        "data": cfg.get("data_info") or {},
        "classes": list(cfg.get("classes") or []) if conditional else [],
        "conditional": conditional,
        "training": {
            "command": cfg.get("command", ""),
            "resumed_with": list(ck.get("commands", []))[1:],
            "steps": int(ck["step"]),
            "epochs": round(float(ck["epoch"]), 3),
            "seconds": round(float(ck["seconds"]), 1),
            "processes": int(ck.get("world_size", 1)),
            "ema": bool(use_ema and ck.get("ema") is not None),
            "settings": {
                k: cfg[k]
                for k in (
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
                if k in cfg
            },
        },
        "onnx_vs_torch_max_abs_diff": diff,
        "exporter": {"kind": exporter, "opset": OPSET, "torch": torch.__version__},
        "sha256": sha,
        "metrics": _kept_metrics(card_path, sha),
    }
    _write_json(card_path, card)
    return card


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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
        exporter = onnx_export(model, inputs(TRACE_BATCH), tmp, ["image"], ["logits", "features"])
        session = ort_session(tmp)
        check_signature(
            session,
            {"image": ("tensor(float)", ["batch", ch, size, size])},
            {"logits": ["batch", arch["n_classes"]], "features": ["batch", arch["feature_dim"]]},
        )
        (x,) = inputs(CHECK_BATCH)
        with torch.no_grad():
            logits, features = model(x)
        got = session.run(["logits", "features"], {"image": x.numpy()})
        diff = max(_max_diff(got[0], logits.numpy()), _max_diff(got[1], features.numpy()))
        if not diff <= TOLERANCE:
            raise TrainError(f"ONNX Runtime and torch differ by {diff:.2e} (> {TOLERANCE})")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    sha = sha256_file(out)
    card_path = out.with_name("card.json")
    card = {
        "model": model_id or out.parent.name,
        "kind": "classifier",
        "architecture": arch,
        "dataset": cfg.get("data"),
        "data": cfg.get("data_info") or {},
        "classes": list(cfg.get("classes") or []),
        "input_range": [-1.0, 1.0],
        "training": {
            "command": cfg.get("command", ""),
            "steps": int(cfg.get("steps", 0)),
            "epochs": int(cfg.get("epochs", 0)),
            "seconds": round(float(ck.get("seconds", 0.0)), 1),
        },
        "test_accuracy": round(float(ck.get("test_accuracy", float("nan"))), 4),
        "onnx_vs_torch_max_abs_diff": diff,
        "exporter": {"kind": exporter, "opset": OPSET, "torch": torch.__version__},
        "sha256": sha,
        "metrics": _kept_metrics(card_path, sha),
    }
    _write_json(card_path, card)
    return card


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
