"""The VAE plugin's networks: a convolutional encoder (image -> mean and log-variance of
q(z|x)), a decoder (z -> the mean and log-scale of a discretised logistic p(x|z) per pixel),
and the loss (reconstruction negative log-likelihood + beta * KL).

The image is halved by stride-2 convolutions while its side is even and above 4 (28 -> 14 -> 7,
64 -> 32 -> 16 -> 8 -> 4, 16 -> 8 -> 4) and the decoder mirrors it with kernel-4, stride-2
transposed convolutions (the kernel divides by the stride: no checkerboard).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

LOG_SCALE_MIN = -7.0  # a scale below e^-7 of a [-1, 1] image is far finer than one 8-bit step
BINS = 256


def halvings(size: int) -> int:
    """How often the encoder halves a ``size`` image (while even and above 4)."""
    if size < 4:
        raise ValueError(f"image size must be at least 4, not {size}")
    n = 0
    while size % 2 == 0 and size > 4:
        size //= 2
        n += 1
    if n == 0:
        raise ValueError(f"image size {size} cannot be halved (it must be even)")
    return n


def widths(width: int, n: int) -> list[int]:
    """Channels after each halving: width, 2w, 4w, 4w, ..."""
    return [width * 2 ** min(i, 2) for i in range(n)]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _config(latent_dim: int, channels: int, size: int, width: int) -> dict[str, Any]:
    return {"latent_dim": latent_dim, "channels": channels, "size": size, "width": width}


class Encoder(nn.Module):
    """image (N, C, S, S) in [-1, 1] -> (mean, logvar), each (N, latent_dim)."""

    def __init__(self, latent_dim: int = 2, channels: int = 1, size: int = 28, width: int = 32):
        super().__init__()
        self.config = _config(latent_dim, channels, size, width)
        n = halvings(size)
        chans = widths(width, n)
        layers: list[nn.Module] = []
        c_in = channels
        for c in chans:
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.SiLU()]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.side = size >> n
        self.head = nn.Linear(c_in * self.side * self.side, 2 * latent_dim)
        self.latent_dim = latent_dim

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.head(self.body(image).flatten(1))
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar


class Decoder(nn.Module):
    """z (N, latent_dim) -> (image, log_scale), each (N, C, S, S): the location (the image one
    sees, roughly in [-1, 1]; clip it to show it) and log-scale of a logistic per pixel."""

    def __init__(self, latent_dim: int = 2, channels: int = 1, size: int = 28, width: int = 32):
        super().__init__()
        self.config = _config(latent_dim, channels, size, width)
        n = halvings(size)
        chans = widths(width, n)[::-1]
        self.side = size >> n
        self.start = chans[0]
        self.fc = nn.Linear(latent_dim, chans[0] * self.side * self.side)
        layers: list[nn.Module] = [nn.SiLU()]
        for i, c in enumerate(chans):
            c_out = chans[i + 1] if i + 1 < len(chans) else chans[-1]
            layers += [nn.ConvTranspose2d(c, c_out, 4, stride=2, padding=1), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(chans[-1], 2 * channels, 3, padding=1)
        self.channels = channels

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc(z).view(-1, self.start, self.side, self.side)
        loc, log_scale = self.out(self.body(h)).chunk(2, dim=1)
        return loc, log_scale.clamp(min=LOG_SCALE_MIN)


class VAE(nn.Module):
    """Encoder + decoder; ``forward`` returns everything the loss needs."""

    def __init__(self, latent_dim: int = 2, channels: int = 1, size: int = 28, width: int = 32):
        super().__init__()
        self.config = _config(latent_dim, channels, size, width)
        self.encoder = Encoder(latent_dim, channels, size, width)
        self.decoder = Decoder(latent_dim, channels, size, width)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mean, logvar = self.encoder(x)
        # Reparameterisation: z = mean + sigma * eps keeps the sample differentiable in mean
        # and sigma.
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        loc, log_scale = self.decoder(z)
        return {"mean": mean, "logvar": logvar, "z": z, "loc": loc, "log_scale": log_scale}


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per image, in nats."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def discretized_logistic_nll(
    x: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """-log P(x) per image in nats, for x on the 256 levels of an 8-bit image scaled to [-1, 1].

    Each level owns a bin of width 2/255; the first and last bins reach to -inf and +inf (as
    in PixelCNN++), so the probabilities sum to one and the number is a true negative
    log-likelihood of the 8-bit image, not a density value."""
    half = 1.0 / (BINS - 1)
    inv = torch.exp(-log_scale)
    centred = x - loc
    upper = inv * (centred + half)
    lower = inv * (centred - half)
    # log(sigmoid(upper) - sigmoid(lower)), stably for the three cases.
    log_cdf_upper = F.logsigmoid(upper)  # log P(X <= x + half): the first bin
    log_one_minus_cdf_lower = -F.softplus(lower)  # log P(X > x - half): the last bin
    mid = inv * centred
    # For a bin inside, P ≈ sigmoid'(mid) * 2*half/scale when the difference underflows.
    log_pdf_mid = mid - log_scale - 2.0 * F.softplus(mid) + math.log(2 * half)
    diff = torch.sigmoid(upper) - torch.sigmoid(lower)
    log_diff = torch.where(diff > 1e-5, torch.log(diff.clamp(min=1e-12)), log_pdf_mid)
    logp = torch.where(
        x < -1.0 + half,
        log_cdf_upper,
        torch.where(x > 1.0 - half, log_one_minus_cdf_lower, log_diff),
    )
    return -logp.flatten(1).sum(1)


def vae_loss(x: torch.Tensor, out: dict[str, torch.Tensor], beta: float) -> dict[str, torch.Tensor]:
    """Mean over the batch of recon NLL + beta * KL; also the unweighted terms and the
    negative ELBO (beta = 1), all in nats per image."""
    recon = discretized_logistic_nll(x, out["loc"], out["log_scale"])
    kl = kl_divergence(out["mean"], out["logvar"])
    return {
        "loss": (recon + beta * kl).mean(),
        "recon_nll": recon.mean(),
        "kl": kl.mean(),
        "neg_elbo": (recon + kl).mean(),
    }
