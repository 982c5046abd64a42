"""Export a trained VAE as two ONNX graphs with its card.json, and print its manifest table.

    python -m gdl_studio_plugins.vae.train.export \\
        --checkpoint runs/vae-fashion-2d/checkpoint.pt --out assets/vae/fashion-2d

writes ``encoder.onnx`` (image -> mean, logvar), ``decoder.onnx`` (z -> image, log_scale) and
``card.json`` into the --out folder.  Each graph is checked in ONNX Runtime against torch on
the same input (max abs difference <= 1e-4, at a batch size other than the one traced, so the
dynamic batch is tested too) before it replaces anything, and the torch decoder rebuilt from
the ONNX file alone (what ``gdl-studio bench vae`` times) must match it.

The map is framed on the training data: the export encodes the training images and, for a
latent of more than two dimensions, keeps the two main axes of their posterior means (PCA);
for a 2-D latent the latent's own two axes.  Each axis is centred on the means and scaled by
their spread along it, so the map's Gaussian quantiles cover where the data really lies (a
trained VAE's encodings match its N(0, I) prior only roughly).  That projection goes into the
card and the printed manifest table (``extras.projection``): it is a 2 x d affine map, which
numpy applies in microseconds, where a third graph would cost an ONNX Runtime call per cursor
move.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gdl_studio_plugins.vae import data as vae_data

from gdl_studio.core.datasets import DatasetError
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

from .models import VAE, Decoder

PROG = "export"
TOLERANCE = 1e-4
TRACE_BATCH = 3  # traced at 3, checked at CHECK_BATCH: a batch size baked in would show
CHECK_BATCH = 7
SETTINGS = ("latent", "beta", "kl_warmup", "width", "batch", "lr", "min_lr", "flip", "seed")


def sha256_file(path: Path) -> str:
    from gdl_studio.core.runtime import sha256_file as sha

    return sha(Path(path))


def torch_decoder_from_onnx(onnx_path: str | Path, architecture: dict[str, Any]) -> Decoder:
    """The torch Decoder of an exported model, rebuilt from card.json's ``architecture`` with
    the weights read from the ONNX file's initializers (no checkpoint needed), in eval mode.
    Lets ``gdl-studio bench vae`` time torch eager on exactly the decoder the app runs."""
    model = Decoder(**architecture)
    load_onnx_weights(model, onnx_path)
    return model


def torch_vae_from_onnx(onnx_path: str | Path, architecture: dict[str, Any]) -> VAE:
    """The whole torch VAE of an exported model folder (``onnx_path``: either graph; the
    other lies beside it), rebuilt from ``architecture`` and the two files' initializers
    (``train_vae --init`` trains on from it)."""
    model = VAE(**architecture)
    load_onnx_weights(model.encoder, Path(onnx_path).with_name("encoder.onnx"))
    load_onnx_weights(model.decoder, Path(onnx_path).with_name("decoder.onnx"))
    return model


def map_projection(means: np.ndarray) -> dict[str, Any]:
    """The map plane of the latent: the mean of ``means`` and two unit axes — for a 2-D
    latent its own axes, else the two main axes of ``means`` (PCA; each signed so that its
    largest component is positive: the same model always gives the same map) — with the
    standard deviation of the means along each."""
    center = means.mean(0)
    cov = np.atleast_2d(np.cov(means - center, rowvar=False))
    if means.shape[1] == 2:
        axes, values = np.eye(2), np.diag(cov).copy()
    else:
        vals, vectors = np.linalg.eigh(cov)
        order = np.argsort(vals)[::-1][:2]
        axes, values = vectors[:, order].T, vals[order]
    for a in axes:
        if a[np.argmax(np.abs(a))] < 0:
            a *= -1
    scale = np.sqrt(np.maximum(values, 1e-12))
    return {
        "center": [round(float(v), 6) for v in center],
        "axes": [[round(float(v), 6) for v in a] for a in axes],
        "scale": [round(float(v), 6) for v in scale],
        "explained": round(float(values.sum() / max(float(np.trace(cov)), 1e-12)), 4),
    }


@torch.no_grad()
def training_means(model: VAE, cfg: dict[str, Any], data_path: str | None) -> np.ndarray:
    """Posterior means of every training image (for the projection)."""
    train = vae_data.load(cfg["data"], "train", data_path or cfg["data_path"], cfg["size"])
    x = torch.tensor(train.images)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    out = []
    for start in range(0, len(x), 500):
        batch = x[start : start + 500].float() / 127.5 - 1.0
        out.append(model.encoder(batch)[0].double().numpy())
    return np.concatenate(out)


def export_graphs(model: VAE, out: Path) -> dict[str, Any]:
    """Write encoder.onnx and decoder.onnx into ``out`` after checking both in ONNX Runtime;
    returns the exporter kinds and the measured differences."""
    arch = dict(model.config)
    ch, size, latent = arch["channels"], arch["size"], arch["latent_dim"]
    g = torch.Generator().manual_seed(0)

    def images(n: int) -> torch.Tensor:
        return torch.rand(n, ch, size, size, generator=g) * 2 - 1

    def latents(n: int) -> torch.Tensor:
        return torch.randn(n, latent, generator=g)

    specs = (
        (
            "encoder",
            model.encoder,
            "image",
            images,
            {"image": ("tensor(float)", ["batch", ch, size, size])},
            {"mean": ["batch", latent], "logvar": ["batch", latent]},
        ),
        (
            "decoder",
            model.decoder,
            "z",
            latents,
            {"z": ("tensor(float)", ["batch", latent])},
            {"image": ["batch", ch, size, size], "log_scale": ["batch", ch, size, size]},
        ),
    )
    info: dict[str, Any] = {"exporter": {}, "onnx_vs_torch_max_abs_diff": {}}
    for name, module, input_name, make, ins, outs in specs:
        path = out / f"{name}.onnx"
        with staged(path) as tmp:
            kind = onnx_export(
                module, (make(TRACE_BATCH),), tmp, [input_name], list(outs), prog=PROG
            )
            session = cpu_session(tmp)
            check_signature(session, ins, outs)
            x = make(CHECK_BATCH)
            with torch.no_grad():
                ref = [t.numpy() for t in module(x)]
            got = session.run(list(outs), {input_name: x.numpy()})
            diff = max(max_abs_diff(a, b) for a, b in zip(got, ref, strict=True))
            if not diff <= TOLERANCE:
                raise TrainError(f"{name}: ONNX Runtime and torch differ by {diff:.2e}")
            if name == "decoder":
                try:
                    rebuilt = torch_decoder_from_onnx(tmp, arch)
                except ValueError as exc:
                    raise TrainError(str(exc)) from None
                with torch.no_grad():
                    again = rebuilt(x)[0].numpy()
                if not max_abs_diff(again, got[0]) <= TOLERANCE:
                    raise TrainError("the decoder rebuilt from the ONNX initializers differs")
            os.replace(tmp, path)
        info["exporter"][name] = exporter_info(kind)
        info["onnx_vs_torch_max_abs_diff"][name] = diff
    return info


def export(
    checkpoint: Path,
    out: Path,
    model_id: str | None = None,
    name: str | None = None,
    data_path: str | None = None,
) -> dict[str, Any]:
    """Export a train_vae checkpoint into the folder ``out``; returns the card."""
    ck = load_checkpoint(checkpoint)
    cfg = ck.get("config") or {}
    if "architecture" not in cfg or "model" not in ck:
        raise TrainError(f"{checkpoint}: not a train_vae checkpoint")
    model = VAE(**cfg["architecture"])
    model.load_state_dict(ck["model"])
    model.eval()
    out = Path(out)
    model_id = model_id or out.name
    projection = map_projection(training_means(model, cfg, data_path))
    info = export_graphs(model, out)
    files = {f: sha256_file(out / f) for f in ("decoder.onnx", "encoder.onnx")}
    sha = "+".join(files[f] for f in ("decoder.onnx", "encoder.onnx"))  # ModelSpec.sha256
    card_path = out / "card.json"
    old = previous_card(card_path, sha)
    history = list(ck.get("history") or [])
    card: dict[str, Any] = {
        "model": model_id,
        "name": name or default_name(cfg),
        "kind": "vae",
        "architecture": dict(model.config),
        "dataset": cfg.get("data"),
        "data": cfg.get("data_info") or {},
        "split": {
            "train": cfg.get("n_train"),
            "test": cfg.get("n_test"),
            "holdout": None
            if cfg.get("data") == "fashion"
            else f"every {vae_data.HOLDOUT}th image of each class",
        },
        "classes": list(_classes(cfg)),
        "likelihood": "discretised logistic per pixel (256 levels), learnt location and scale",
        "training": training_record(ck, cfg, SETTINGS, last_test=history[-1] if history else {}),
        **info,
        "projection": projection,
        "files": files,
        "sha256": sha,
        "metrics": old.get("metrics", {}),
    }
    for key in ("metrics_command", "metrics_date", "speed", "speed_command", "speed_date"):
        if key in old:
            card[key] = old[key]
    write_card(card_path, card)
    return card


def _classes(cfg: dict[str, Any]) -> tuple[str, ...]:
    from gdl_studio.core.datasets import FASHION_CLASSES

    return FASHION_CLASSES if cfg.get("data") == "fashion" else ()


def default_name(cfg: dict[str, Any]) -> str:
    data = {"fashion": "Fashion-MNIST", "faces": "ORL faces"}.get(cfg.get("data", ""), "images")
    return f"{data}, {cfg.get('latent', '?')}-D latent"


def manifest_table(card: dict[str, Any], folder: str) -> str:
    """The [[models]] table for plugin.toml (paths relative to assets/vae/)."""
    import json

    arch = card["architecture"]
    ch, size, latent = arch["channels"], arch["size"], arch["latent_dim"]

    def shape(dims: list[Any]) -> str:
        return json.dumps(dims)

    lines = [
        "[[models]]",
        f'id = "{card["model"]}"',
        f"name = {json.dumps(card['name'])}",
        f'card = "{folder}/card.json"',
        "[models.graphs.encoder]",
        f'file = "{folder}/encoder.onnx"',
        f'sha256 = "{card["files"]["encoder.onnx"]}"',
        f"inputs = {{ image = {shape(['batch', ch, size, size])} }}",
        f"outputs = {{ mean = {shape(['batch', latent])}, logvar = {shape(['batch', latent])} }}",
        "[models.graphs.decoder]",
        f'file = "{folder}/decoder.onnx"',
        f'sha256 = "{card["files"]["decoder.onnx"]}"',
        f"inputs = {{ z = {shape(['batch', latent])} }}",
        f"outputs = {{ image = {shape(['batch', ch, size, size])}, "
        f"log_scale = {shape(['batch', ch, size, size])} }}",
        "[models.extras]",
        f'dataset = "{card["dataset"]}"',
    ]
    if card.get("classes"):
        lines.append(f"classes = {json.dumps(card['classes'])}")
    proj = card.get("projection")
    if proj:
        lines.append("[models.extras.projection]")
        lines += [f"{k} = {json.dumps(proj[k])}" for k in ("center", "axes", "scale")]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Export a VAE to two ONNX graphs.")
    p.add_argument("--checkpoint", required=True, type=Path, help="a train_vae checkpoint.pt")
    p.add_argument("--out", required=True, type=Path, help="the model folder, e.g. assets/vae/ID")
    p.add_argument("--model-id", help="default: the name of the --out folder")
    p.add_argument("--name", help="the model's display name")
    p.add_argument("--data-path", help="the training data, when it moved since training")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        card = export(args.checkpoint, args.out, args.model_id, args.name, args.data_path)
    except (TrainError, DatasetError) as exc:
        fail(PROG, str(exc))
    diffs = card["onnx_vs_torch_max_abs_diff"]
    print(
        f"wrote {args.out}/encoder.onnx, decoder.onnx and card.json ({card['model']!r}; "
        f"max |onnx - torch|: encoder {diffs['encoder']:.2e}, decoder {diffs['decoder']:.2e})"
    )
    print("\n# plugin.toml:\n" + manifest_table(card, Path(args.out).name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
