"""Export a trained character LSTM as one ONNX step graph with its card.json.

    python -m gdl_studio_plugins.text.train.export \\
        --checkpoint runs/shakespeare/checkpoint.pt --out assets/text/shakespeare/model.onnx

The graph (token + state -> logits + new state, see ``gdl_studio_plugins.text.model``) is
checked against torch before it replaces anything: one step at a batch size other than the
traced one, and a sequence stepped through ONNX Runtime against the training model's own
nn.LSTM.  Then dynamic int8 quantisation is tried (``--quantize auto``): the int8 graph is
kept only when it is faster and its validation loss is within ``--quantize-tolerance`` of the
float graph's; the card records both numbers either way.  Prints the ``[[models]]`` table for
plugin.toml.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gdl_studio_plugins.text.corpus import Vocabulary, read_text, split_point
from gdl_studio_plugins.text.evaluate import mean_nll
from gdl_studio_plugins.text.model import INPUTS, OUTPUTS, CharModel

from gdl_studio.core.runtime import sha256_file
from gdl_studio.training.cards import exporter_info, previous_card, training_record, write_card
from gdl_studio.training.checkpoints import load_checkpoint
from gdl_studio.training.errors import TrainError, fail
from gdl_studio.training.export import cpu_session, onnx_export, onnx_initializers, staged

from .model import CharLSTM, CharLSTMStep

PROG = "export"
TOLERANCE = 1e-4
QUANTIZE_TOLERANCE = 0.01  # nats per character the int8 graph may lose on validation
TRACE_BATCH, CHECK_BATCH = 3, 5  # a batch size baked into the graph would show
# The train.py settings the card records.
SETTINGS = ("batch", "bptt", "lr", "min_lr", "warmup", "weight_decay", "clip", "dropout", "seed")


class OrtStep:
    """An ONNX Runtime session with the two things CharModel asks of a session."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        self.session = cpu_session(path, threads)
        self.input_shapes = {i.name: tuple(i.shape) for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(
        self, feeds: dict[str, np.ndarray], outputs: list[str] | tuple[str, ...] | None = None
    ) -> list[np.ndarray]:
        return list(self.session.run(list(outputs) if outputs else None, feeds))


# The step graph's batch is dimension 1 of the LSTM states (layers, batch, hidden).
BATCH_AXES = {"h": 1, "c": 1, "h_out": 1, "c_out": 1}


def export_step(step: CharLSTMStep, path: Path) -> str:
    """The step graph, traced at ``TRACE_BATCH``, to one file with a dynamic batch; returns
    the exporter used.  Every weight stays an initializer named by its state-dict key
    (``torch_model_from_onnx`` relies on it)."""
    cfg = step.config
    args = (
        torch.arange(TRACE_BATCH) % cfg["vocab_size"],
        torch.zeros(cfg["layers"], TRACE_BATCH, cfg["hidden"]),
        torch.zeros(cfg["layers"], TRACE_BATCH, cfg["hidden"]),
    )
    return onnx_export(step, args, path, INPUTS, OUTPUTS, BATCH_AXES, prog=PROG)


def check_against_torch(model: CharLSTM, path: Path) -> float:
    """Max |ONNX Runtime - torch| over one batched step (random state) and a 64-character
    sequence stepped through the graph against nn.LSTM over the whole sequence."""
    cfg = model.config
    sess = OrtStep(path)
    shapes = sess.input_shapes
    if shapes.get("h", ())[::2] != (cfg["layers"], cfg["hidden"]) or "token" not in shapes:
        raise TrainError(f"the graph's inputs are {shapes}, not the step contract")
    g = torch.Generator().manual_seed(0)
    token = torch.randint(0, cfg["vocab_size"], (CHECK_BATCH,), generator=g)
    h = torch.randn(cfg["layers"], CHECK_BATCH, cfg["hidden"], generator=g) * 0.5
    c = torch.randn(cfg["layers"], CHECK_BATCH, cfg["hidden"], generator=g)
    with torch.no_grad():
        ref = CharLSTMStep(model)(token, h, c)
    got = sess.run({"token": token.numpy(), "h": h.numpy(), "c": c.numpy()}, OUTPUTS)
    diff = max(float(np.abs(a - b.numpy()).max()) for a, b in zip(got, ref, strict=True))
    ids = torch.randint(0, cfg["vocab_size"], (1, 64), generator=g)
    with torch.no_grad():
        seq, _ = model(ids, model.zero_state(1))
    hs = np.zeros((cfg["layers"], 1, cfg["hidden"]), np.float32)
    cs = hs.copy()
    for t in range(ids.shape[1]):
        logits, hs, cs = sess.run({"token": ids[0, t : t + 1].numpy(), "h": hs, "c": cs}, OUTPUTS)
        diff = max(diff, float(np.abs(logits[0] - seq[0, t].numpy()).max()))
    if not diff <= TOLERANCE:
        raise TrainError(f"ONNX Runtime and torch differ by {diff:.2e} (> {TOLERANCE})")
    return diff


def quantize(src: Path, dst: Path) -> None:
    """Dynamic int8 (weights int8, activations quantised per call) with ONNX Runtime's tool."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    # The exporter's intermediate shape annotations trip the quantiser's shape inference.
    del model.graph.value_info[:]
    plain = dst.with_name(dst.name + ".plain.onnx")
    onnx.save(model, str(plain))
    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.ERROR)  # its "run pre-processing first" advice does not apply
        quantize_dynamic(str(plain), str(dst), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
        plain.unlink(missing_ok=True)


def step_ms(path: Path, cfg: dict[str, Any], calls: int = 300) -> float:
    """Median milliseconds per one-character call at batch 1, on one thread."""
    sess = OrtStep(path, threads=1)
    shape = (cfg["layers"], 1, cfg["hidden"])
    feeds = {
        "token": np.zeros(1, np.int64),
        "h": np.zeros(shape, np.float32),
        "c": np.zeros(shape, np.float32),
    }
    for _ in range(20):
        sess.run(feeds)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(calls // 5):
            sess.run(feeds)
        times.append((time.perf_counter() - t) * 1000 / (calls // 5))
    return statistics.median(times)


def validation_ids(cfg: dict[str, Any], vocab: Vocabulary) -> np.ndarray | None:
    """The validation split of the training file, when the file is still here unchanged."""
    info = cfg.get("data_info") or {}
    path = Path(info.get("path", ""))
    if not path.is_file() or sha256_file(path) != info.get("sha256"):
        return None
    text = read_text(path, info.get("encoding", "utf-8"), info.get("decode_errors", "strict"))
    ids = vocab.encode_exact(text)
    return ids[split_point(len(ids)) :]


def try_int8(
    fp32: Path, cfg: dict[str, Any], vocab: Vocabulary, mode: str, tolerance: float
) -> tuple[Path, dict[str, Any]]:
    """The graph to ship (the float one or its int8 version) and what was measured."""
    report: dict[str, Any] = {"mode": mode, "tolerance_nats": tolerance, "kept": False}
    if mode == "never":
        return fp32, report
    q = fp32.with_name(fp32.name + ".int8.onnx")
    try:
        quantize(fp32, q)
    except Exception as exc:  # the quantiser's failures are many; the float graph is fine
        if mode == "always":
            raise TrainError(f"int8 quantisation failed: {exc}") from exc
        report["why_not"] = f"quantisation failed ({exc.__class__.__name__})"
        return fp32, report
    arch = cfg["architecture"]
    report["ms_per_char_fp32"] = round(step_ms(fp32, arch), 4)
    report["ms_per_char_int8"] = round(step_ms(q, arch), 4)
    val = validation_ids(cfg, vocab)
    if val is not None:
        for name, path in (("fp32", fp32), ("int8", q)):
            report[f"val_nll_{name}"] = round(mean_nll(CharModel(OrtStep(path), vocab), val)[0], 5)
        report["val_nll_change"] = round(report["val_nll_int8"] - report["val_nll_fp32"], 5)
    faster = report["ms_per_char_int8"] < report["ms_per_char_fp32"]
    close = val is not None and report["val_nll_change"] <= tolerance
    if mode == "always" or (faster and close):
        report["kept"] = True
        return q, report
    report["why_not"] = (
        "not faster"
        if not faster
        else "the validation file is not here"
        if val is None
        else "validation loss moved too much"
    )
    q.unlink(missing_ok=True)
    return fp32, report


def export(
    checkpoint: Path,
    out: Path,
    model_id: str | None = None,
    quantize_mode: str = "auto",
    tolerance: float = QUANTIZE_TOLERANCE,
) -> dict[str, Any]:
    """Export a train.py checkpoint; returns the card (also written beside ``out``)."""
    ck = load_checkpoint(checkpoint)
    cfg = ck.get("config") or {}
    if "architecture" not in cfg or "model" not in ck or "vocabulary" not in cfg:
        raise TrainError(f"{checkpoint}: not a checkpoint of the text trainer")
    model = CharLSTM(**cfg["architecture"])
    model.load_state_dict(ck["model"])
    model.eval()
    vocab = Vocabulary(list(cfg["vocabulary"]))
    out = Path(out)
    with staged(out, ".tmp.onnx") as tmp:
        try:
            exporter = export_step(CharLSTMStep(model).eval(), tmp)
            diff = check_against_torch(model, tmp)
            chosen, qreport = try_int8(tmp, cfg, vocab, quantize_mode, tolerance)
            os.replace(chosen, out)
        finally:
            tmp.with_name(tmp.name + ".int8.onnx").unlink(missing_ok=True)
    sha = sha256_file(out)
    card_path = out.with_name("card.json")
    history = ck.get("val_history") or []
    card = {
        "model": model_id or out.parent.name,
        "kind": "char-lstm-step",
        "architecture": dict(model.config),
        "vocabulary": vocab.chars,
        "data": cfg.get("data_info") or {},
        "training": training_record(ck, cfg, SETTINGS),
        "val_history": history,
        # What `gdl-studio eval text` gives for the shipped graph where export measured it.
        "val_nll": qreport.get(
            "val_nll_int8" if qreport["kept"] else "val_nll_fp32",
            round(history[-1]["val_nll"], 5) if history else None,
        ),
        "val_nll_torch": round(history[-1]["val_nll"], 5) if history else None,
        "val_nll_split": "last 10% of the training file (first 90% train); nats per character",
        "onnx_vs_torch_max_abs_diff": diff,
        "quantization": qreport,
        "exporter": exporter_info(exporter),
        "sha256": sha,
        "metrics": {},
    }
    card.update(_kept_measurements(card_path, sha))
    write_card(card_path, card)
    return card


MEASURED = ("metrics", "metrics_command", "metrics_date", "speed", "speed_command", "speed_date")


def _kept_measurements(card_path: Path, sha: str) -> dict[str, Any]:
    """What scripts/model_card.py stored in an existing card (eval and bench output), kept
    only when the model file did not change."""
    old = previous_card(card_path, sha)
    return {k: old[k] for k in MEASURED if k in old}


def manifest_table(card: dict[str, Any], out: Path, default: bool = False) -> str:
    """The [[models]] entry for plugin.toml (``file`` relative to assets/text/)."""
    a = card["architecture"]
    return "\n".join(
        [
            "[[models]]",
            f'id = "{card["model"]}"',
            f'name = "{card["data"].get("name", card["model"])} LSTM {a["layers"]}x{a["hidden"]}"',
            f'file = "{out.parent.name}/{out.name}"',
            f'card = "{out.parent.name}/card.json"',
            f'sha256 = "{card["sha256"]}"',
            *(["default = true"] if default else []),
            "[models.inputs]",
            'token = ["batch"]',
            f'h = [{a["layers"]}, "batch", {a["hidden"]}]',
            f'c = [{a["layers"]}, "batch", {a["hidden"]}]',
            "[models.outputs]",
            f'logits = ["batch", {a["vocab_size"]}]',
            f'h_out = [{a["layers"]}, "batch", {a["hidden"]}]',
            f'c_out = [{a["layers"]}, "batch", {a["hidden"]}]',
        ]
    )


def torch_model_from_onnx(path: str | Path, card: dict[str, Any]) -> CharLSTM:
    """The torch CharLSTM of an exported graph, rebuilt from card.json's ``architecture`` and
    the file's initializers (int8 weights dequantised), in eval mode: lets ``bench`` time
    torch eager on the model the app runs, with no checkpoint."""
    tensors = onnx_initializers(Path(path))
    model = CharLSTM(**card["architecture"])
    loaded = {}
    for key, ref in model.state_dict().items():
        if key in tensors:
            value = np.asarray(tensors[key], np.float32)
        elif f"{key}_quantized" in tensors:
            q = tensors[f"{key}_quantized"].astype(np.float32)
            value = (q - tensors[f"{key}_zero_point"].astype(np.float32)) * tensors[f"{key}_scale"]
        else:
            raise ValueError(f"{path}: no initializer for {key}")
        if value.shape != tuple(ref.shape) and value.T.shape == tuple(ref.shape):
            value = value.T  # the quantiser stores MatMul weights as [in, out]
        if value.shape != tuple(ref.shape):
            raise ValueError(
                f"{path}: {key} is {value.shape}, the architecture needs {tuple(ref.shape)}"
            )
        loaded[key] = torch.from_numpy(np.array(value, np.float32, copy=True))
    model.load_state_dict(loaded)
    return model.eval()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Export a character LSTM to ONNX.")
    p.add_argument("--checkpoint", required=True, type=Path, help="a run's checkpoint.pt")
    p.add_argument("--out", required=True, type=Path, help=".../assets/text/<model-id>/model.onnx")
    p.add_argument("--model-id", help="default: the name of the --out folder")
    p.add_argument(
        "--quantize",
        choices=["auto", "never", "always"],
        default="auto",
        help="auto: keep int8 only if faster and the validation loss barely moves",
    )
    p.add_argument(
        "--quantize-tolerance",
        type=float,
        default=QUANTIZE_TOLERANCE,
        help="nats per character int8 may lose on the validation split",
    )
    p.add_argument("--default", action="store_true", help="mark the printed [[models]] default")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        card = export(
            args.checkpoint, args.out, args.model_id, args.quantize, args.quantize_tolerance
        )
    except (TrainError, ValueError) as exc:
        fail(PROG, str(exc))
    q = card["quantization"]
    print(
        f"wrote {args.out} ({card['exporter']['kind']} exporter, max |onnx - torch| = "
        f"{card['onnx_vs_torch_max_abs_diff']:.2e}, int8 {'kept' if q['kept'] else 'not kept'}"
        f"{': ' + q['why_not'] if 'why_not' in q else ''})"
    )
    if "val_nll_fp32" in q:
        print(
            f"validation nats/char: fp32 {q['val_nll_fp32']}, int8 {q['val_nll_int8']}; "
            f"ms/char fp32 {q['ms_per_char_fp32']}, int8 {q['ms_per_char_int8']}"
        )
    print(f"sha256 {card['sha256']}\n\nAdd to plugins/text/plugin.toml:\n")
    print(manifest_table(card, Path(args.out), args.default))
    return 0


if __name__ == "__main__":
    sys.exit(main())
