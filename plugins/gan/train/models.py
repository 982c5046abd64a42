"""The GAN plugin's networks: a DCGAN generator and discriminator (optionally class-conditional,
with an AC-GAN head), and the small classifier the evaluator uses.

Two architectures (``arch``):

- ``dcgan``: the book's DCGAN.  Sizes are any multiple of 4 (28 for Fashion-MNIST, 32 for
  CIFAR-10): the generator starts from a (size/4)-pixel map and doubles it twice; the
  discriminator halves it twice.
- ``deep``: the "standard CNN" of the spectral-normalisation paper (Miyato et al. 2018), the
  usual DCGAN for 32x32 colour: the generator starts from a 4x4 map of 8 x width channels and
  doubles it three times (sizes that are a multiple of 8; twice, from size/4, otherwise), then a
  3x3 convolution makes the image; the discriminator puts a 3x3 convolution before every
  stride-2 one and one more at the end, so each scale is looked at twice.  About 4x the
  compute of ``dcgan`` at the same width, and the capacity colour images need.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

ARCHS = ("dcgan", "deep")


def _doublings(size: int, arch: str) -> int:
    """How many times the generator doubles its first map (the discriminator halves)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r} ({', '.join(ARCHS)})")
    if size < 8 or size % 4:
        raise ValueError(f"image size must be a multiple of 4 and at least 8, not {size}")
    return 3 if arch == "deep" and size % 8 == 0 and size >= 16 else 2


class Generator(nn.Module):
    """DCGAN generator: z (and a label embedding) -> linear -> (2w, s/4, s/4) -> two
    transposed convolutions (kernel 4, stride 2: the kernel is divisible by the stride, so
    every output pixel gets the same number of contributions and no checkerboard appears)
    -> tanh image in [-1, 1].  ``arch="deep"``: (8w, 4, 4) -> three such doublings down to
    w channels -> a 3x3 convolution to the image (see the module's docstring)."""

    def __init__(
        self,
        latent_dim: int = 100,
        n_classes: int = 0,
        channels: int = 1,
        size: int = 28,
        width: int = 64,
        embed_dim: int = 50,
        arch: str = "dcgan",
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "latent_dim": latent_dim,
            "n_classes": n_classes,
            "channels": channels,
            "size": size,
            "width": width,
            "embed_dim": embed_dim if n_classes else 0,
            "arch": arch,
        }
        self.latent_dim, self.n_classes, self.channels, self.size = (
            latent_dim,
            n_classes,
            channels,
            size,
        )
        ups = _doublings(size, arch)
        self.start = size >> ups
        self.embed = nn.Embedding(n_classes, embed_dim) if n_classes else None
        in_dim = latent_dim + (embed_dim if n_classes else 0)
        deep = arch == "deep"
        c0 = width << ups if deep else 2 * width
        # Batch norm is applied after the reshape (BatchNorm2d, not 1d on the flat vector):
        # per-channel statistics are what the convolutions that follow see, and the ONNX
        # graph keeps a plain BatchNormalization node with the module's own tensors.
        self.fc = nn.Linear(in_dim, c0 * self.start * self.start, bias=False)
        layers: list[nn.Module] = [nn.BatchNorm2d(c0), nn.ReLU(inplace=True)]
        c = c0
        for i in range(ups):
            last = i == ups - 1 and not deep  # dcgan: the last doubling makes the image
            c_out = channels if last else c // 2
            layers.append(nn.ConvTranspose2d(c, c_out, 4, stride=2, padding=1, bias=last))
            if not last:
                layers += [nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c = c_out
        if deep:
            layers.append(nn.Conv2d(c, channels, 3, padding=1))
        layers.append(nn.Tanh())
        self.body = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DCGAN initialisation: N(0, 0.02) weights, N(1, 0.02) batch-norm scales."""
        _dcgan_init(self)

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            if label is None:
                raise ValueError("a conditional generator needs a label")
            z = torch.cat([z, self.embed(label)], dim=1)
        x = self.fc(z).view(z.shape[0], -1, self.start, self.start)
        return self.body(x)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        # Layer norm over (C, H, W) with a per-channel affine: normalises each sample on its
        # own, which the WGAN-GP penalty needs (batch norm mixes samples in a batch).
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r} (batch, layer, none)")


class Discriminator(nn.Module):
    """DCGAN discriminator (or WGAN critic): two stride-2 convolutions with LeakyReLU(0.2),
    optional dropout, and a linear real/fake logit.

    Conditional (``n_classes`` > 0): the label, embedded as an extra image plane, is
    concatenated to the input.  ``aux_classifier`` adds the AC-GAN class head on a trunk of its
    own (half as wide) that sees the image only: on the shared trunk it could read the label
    plane back and would teach the generator nothing, and dropping the plane (the original
    AC-GAN) or passing the label by projection let the generator collapse to one image per
    class in our runs.  ``mbstd_group`` > 0 adds a minibatch standard-deviation channel.
    """

    def __init__(
        self,
        n_classes: int = 0,
        channels: int = 1,
        size: int = 28,
        width: int = 64,
        norm: str = "batch",
        dropout: float = 0.0,
        aux_classifier: bool = False,
        mbstd_group: int = 0,
        arch: str = "dcgan",
    ) -> None:
        super().__init__()
        if aux_classifier and not n_classes:
            raise ValueError("an auxiliary classifier needs n_classes > 0")
        self.config: dict[str, Any] = {
            "n_classes": n_classes,
            "channels": channels,
            "size": size,
            "width": width,
            "norm": norm,
            "dropout": dropout,
            "aux_classifier": aux_classifier,
            "mbstd_group": mbstd_group,
            "arch": arch,
        }
        self.size = size
        self.mbstd_group = mbstd_group
        ups = _doublings(size, arch)
        end = size >> ups
        self.embed = nn.Embedding(n_classes, size * size) if n_classes else None
        in_ch = channels + (1 if n_classes else 0)
        self.features, c = _d_trunk(in_ch, width, norm, dropout, ups, arch == "deep")
        flat = (c + (1 if mbstd_group else 0)) * end * end
        self.adv = nn.Linear(flat, 1)
        self.aux: nn.Module | None = None
        if aux_classifier:
            trunk, c = _d_trunk(channels, max(8, width // 2), norm, dropout, ups, arch == "deep")
            self.aux = nn.Sequential(trunk, nn.Flatten(), nn.Linear(c * end * end, n_classes))
        _dcgan_init(self)

    def forward(
        self, x: torch.Tensor, label: torch.Tensor | None = None, classify: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(real/fake logit (B,), class logits (B, n_classes) or None).  ``classify=False``
        skips the class head where its output would not be used."""
        cls = self.aux(x) if self.aux is not None and classify else None
        if self.embed is not None:
            if label is None:
                raise ValueError("a conditional discriminator needs a label")
            plane = self.embed(label).view(-1, 1, self.size, self.size)
            x = torch.cat([x, plane], dim=1)
        h = self.features(x)
        if self.mbstd_group:
            h = minibatch_std(h, self.mbstd_group)
        return self.adv(h.flatten(1)).squeeze(1), cls


def _d_trunk(
    in_ch: int, width: int, norm: str, dropout: float, halvings: int = 2, deep: bool = False
) -> tuple[nn.Sequential, int]:
    """The discriminator's convolutions and their output channel count.  dcgan: stride-2
    convolutions (width, 2 width, ...); deep: a 3x3 convolution before each of them and one
    more after the last (width, width; 2w, 2w; ...; 2^halvings w)."""
    layers: list[nn.Module] = []
    c_in, c = in_ch, width
    first = True

    def conv(c_in: int, c_out: int, k: int, stride: int) -> None:
        nonlocal first
        # No normalisation on the first layer (DCGAN): it would fix the input's scale.
        layers.append(nn.Conv2d(c_in, c_out, k, stride, padding=1, bias=first or norm == "none"))
        if not first:
            layers.append(_norm(norm, c_out))
        layers.extend([nn.LeakyReLU(0.2, inplace=True), nn.Dropout(dropout)])
        first = False

    for i in range(halvings):
        if deep:
            conv(c_in, c, 3, 1)
            c_in = c
        conv(c_in, c, 4, 2)
        c_in = c
        if i < halvings - 1:
            c *= 2
    if deep:
        conv(c_in, 2 * c, 3, 1)
        c *= 2
    return nn.Sequential(*layers), c


def minibatch_std(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append the spread of the features across groups of samples as one more channel
    (Karras et al., ProGAN).  A generator that ignores z gives identical images whose spread
    is zero, which the discriminator can then see and punish: the cheapest remedy for the
    collapse that class-conditioning (the AC-GAN head in particular) invites."""
    b, c, h, w = x.shape
    g = min(group, b)
    while b % g:  # a group size that divides the batch (1 at worst: no information)
        g -= 1
    y = x.float().view(g, b // g, c, h, w)
    y = (y - y.mean(0)).pow(2).mean(0).add(1e-8).sqrt()  # (b/g, C, H, W): std over a group
    y = y.mean(dim=(1, 2, 3)).repeat(g)  # one number per group, back to every member
    return torch.cat([x, y.view(b, 1, 1, 1).expand(b, 1, h, w).to(x.dtype)], dim=1)


class Classifier(nn.Module):
    """A small CNN for the independent evaluator: three conv-BN-ReLU-pool stages and a
    ``feature_dim`` layer whose activations are the features for the Fréchet distance.

    Trained separately from any GAN so that it does not share the generator's blind spots."""

    def __init__(
        self,
        n_classes: int = 10,
        channels: int = 1,
        size: int = 28,
        width: int = 32,
        feature_dim: int = 128,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "n_classes": n_classes,
            "channels": channels,
            "size": size,
            "width": width,
            "feature_dim": feature_dim,
            "dropout": dropout,
        }

        def stage(c_in: int, c_out: int) -> list[nn.Module]:
            return [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]

        w = width
        self.body = nn.Sequential(
            *stage(channels, w),
            *stage(w, w),
            nn.MaxPool2d(2),
            *stage(w, 2 * w),
            nn.MaxPool2d(2),
            *stage(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1),  # any input size; 28 and 32 alike
            nn.Flatten(),
        )
        self.fc = nn.Sequential(
            nn.Linear(4 * w, feature_dim, bias=False),
            nn.BatchNorm1d(feature_dim),
            nn.ReLU(inplace=True),
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class logits, penultimate features)."""
        features = self.fc(self.body(x))
        return self.head(self.drop(features)), features


def _dcgan_init(module: nn.Module) -> None:
    for m in module.modules():
        # Embeddings keep PyTorch's N(0, 1): at 0.02 the label would start out all but
        # invisible beside a unit-variance z or a [-1, 1] image.
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
