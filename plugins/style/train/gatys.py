"""The classic style transfer (Gatys et al. 2015) as one ONNX graph: the loss of an image and
d(loss)/d(image), through EfficientNet-Lite0 up to block 10, so that the studio can optimise
the pixels themselves with ONNX Runtime alone.

ONNX has no autograd, so the backward pass is written out, on the DeepDream plugin's
hand-written machinery (``gdl_studio_plugins.dream.train.graph.DreamGraph``: batch norm
folded into the convolutions, ReLU6 masks, transposed convolutions); the export checks it
against torch autograd through the reference network, as DeepDream's does.

The losses are the perceptual ones of ``perceptual.py`` (the fast networks' trainer), on the
ReLU6 activations after each block's depthwise convolution:

- content: mean((a_4 - C)²) / mean(C²) at block 4, C the photo's features;
- style: for each block l in 0..10, mean((G_l - S_l)²) / mean(S_l²), G the image's Gram
  matrix F Fᵀ / (channels · positions) and S the painting's, weighted per block.

The same graph gives the targets: run on the photo it returns its block-4 ``features``, run on
the painting its ``grams`` (all blocks, flattened one after another), whatever the weights.
Total variation, a pixel-level term, is left to the caller (numpy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from gdl_studio_plugins.dream.train.graph import DreamGraph
from torch import nn

CONTENT_LAYER = 4
STYLE_LAYERS = tuple(range(11))  # blocks 0-10: strides 2 to 16
EPS = 1e-12


class GatysGraph(DreamGraph):
    """``forward(image, content, grams, content_weight, style_weights)``:

    - ``image`` (1, 3, H, W) RGB in [-1, 1], H and W multiples of 32;
    - ``content`` the block-4 features to keep (1, C4, H/8, W/8); ``grams`` the style's Gram
      matrices of blocks 0-10, flattened and concatenated (``gram_sizes`` entries each);
    - ``content_weight`` (1,), ``style_weights`` (11,).

    Returns ``loss`` (scalar), ``grad`` (like ``image``), ``features`` (the image's block-4
    features) and ``image_grams`` (the image's Gram matrices, laid out like ``grams``)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__(net)
        deepest = max((*STYLE_LAYERS, CONTENT_LAYER))
        self.blocks = self.blocks[: deepest + 1]
        used = {self.stem} | {i for block in self.blocks for i in block[:3] if i >= 0}
        # Keep only what the truncated network reads: the export then holds no unused weight.
        for i in range(len(self.specs)):
            if i not in used:
                del self._buffers[f"w{i}"], self._buffers[f"b{i}"]
        del self._buffers["fc_w"], self._buffers["fc_b"]
        self.channels = [int(self._wb(dw)[0].shape[0]) for _e, dw, _p, _r in self.blocks]
        self.gram_sizes = [c * c for c in self.channels]

    def forward(  # type: ignore[override]
        self,
        image: torch.Tensor,
        content: torch.Tensor,
        grams: torch.Tensor,
        content_weight: torch.Tensor,
        style_weights: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        masks: dict[int, torch.Tensor] = {}  # ReLU6 derivative of each layer

        def act(i: int, x: torch.Tensor) -> torch.Tensor:
            return self._act(i, x, masks)

        # ---------------------------------------------------------------- forward
        last = len(self.blocks) - 1
        x = act(self.stem, image)
        taps: list[torch.Tensor] = []
        for index, (expand, depthwise, project, residual) in enumerate(self.blocks):
            inp = x
            h = act(expand, x) if expand >= 0 else x
            a = act(depthwise, h)
            taps.append(a)
            if index < last:  # the deepest block's projection feeds nothing here
                x = act(project, a)
                if residual:
                    x = x + inp

        # ---------------------------------------------------------------- losses
        feats = taps[CONTENT_LAYER]
        count = torch.ones_like(feats).sum()
        scale = (content * content).sum() / count
        diff = feats - content
        weight = content_weight.reshape(()) / scale.clamp_min(EPS)
        loss = weight * (diff * diff).sum() / count
        tap_grads = [torch.zeros_like(a) for a in taps]
        tap_grads[CONTENT_LAYER] = diff * (2.0 * weight / count)

        image_grams: list[torch.Tensor] = []
        offset = 0
        for layer, a in enumerate(taps):
            c = self.channels[layer]
            f = a.reshape(c, -1)
            positions = torch.ones_like(f[0]).sum()
            g = f @ f.t() / (c * positions)
            image_grams.append(g.reshape(-1))
            target = grams[offset : offset + c * c].reshape(c, c)
            offset += c * c
            w = style_weights[layer] / (target * target).mean().clamp_min(EPS)
            d = g - target
            loss = loss + w * (d * d).mean()
            # d/dF of mean((F Fᵀ/n - S)²) = 4 (G - S) F / (c² n), n = c · positions.
            tap_grads[layer] = tap_grads[layer] + (
                (4.0 * w / (c * c * c * positions)) * (d @ f)
            ).reshape(a.shape)

        # ---------------------------------------------------------------- backward
        g_out: torch.Tensor | None = None
        for index in range(last, -1, -1):
            expand, depthwise, project, residual = self.blocks[index]
            g_a = tap_grads[index]
            if g_out is not None:
                g_a = g_a + self._conv_input_grad(project, g_out)
            g = self._conv_input_grad(depthwise, g_a * masks[depthwise])
            if expand >= 0:
                g = self._conv_input_grad(expand, g * masks[expand])
            if residual and g_out is not None:
                g = g + g_out
            g_out = g
        assert g_out is not None
        grad = self._conv_input_grad(self.stem, g_out * masks[self.stem])
        return loss, grad, feats, torch.cat(image_grams)


def reference_loss(
    taps: nn.Module,
    image: torch.Tensor,
    content: torch.Tensor,
    grams: list[torch.Tensor],
    content_weight: float,
    style_weights: torch.Tensor,
) -> torch.Tensor:
    """The same loss on the reference implementation (efficientnet-lite-pytorch), for autograd
    to differentiate (the export's check and the tests); ``taps`` is
    ``perceptual.FeatureTaps(net, STYLE_LAYERS)``, built once (it hooks the network)."""
    from .perceptual import gram

    features = taps((image + 1.0) / 2.0)
    feats = features[CONTENT_LAYER]
    loss = content_weight * F.mse_loss(feats, content) / content.pow(2).mean().clamp_min(EPS)
    for layer, (a, target) in enumerate(zip(features, grams, strict=True)):
        scale = target.pow(2).mean().clamp_min(EPS)
        loss = loss + style_weights[layer] * (gram(a)[0] - target).pow(2).mean() / scale
    return loss
