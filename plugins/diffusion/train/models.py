"""The denoiser: a U-Net that predicts the noise in a noisy image, told how much noise it holds.

Residual blocks with group norm and SiLU, the noise level injected into every block from a
sinusoidal embedding of the noise variance (Foster's diffusion chapter: frequencies spaced
geometrically from 1 to 1000), self-attention at the lowest resolution(s) and in the middle,
stride-2 convolutions down and nearest-neighbour upsampling + convolution up (no checkerboard).
An optional class label (index ``classes`` = no class) is added to the noise embedding and is
dropped at random during training, so one network samples with or without a class and with
classifier-free guidance.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

EMBED_FREQ_MAX = 1000.0


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def groups_for(channels: int, wanted: int = 8) -> int:
    g = min(wanted, channels)
    while channels % g:
        g -= 1
    return g


class NoiseEmbedding(nn.Module):
    """noise variance (N,) -> (N, dim): sin and cos of 2 pi f v for ``dim/2`` frequencies."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        freqs = torch.exp(torch.linspace(0.0, math.log(EMBED_FREQ_MAX), dim // 2))
        self.register_buffer("angular", 2 * math.pi * freqs, persistent=False)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        a = v[:, None] * self.angular[None]
        return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups_for(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb, c_out)
        self.norm2 = nn.GroupNorm(groups_for(c_out), c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(e)[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the pixels of a (small) feature map, residual."""

    def __init__(self, c: int, heads: int = 4) -> None:
        super().__init__()
        while c % heads:
            heads -= 1
        self.heads = heads
        self.norm = nn.GroupNorm(groups_for(c), c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        d = c // self.heads
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, d, h * w).unbind(1)
        # Written out rather than F.scaled_dot_product_attention: plain MatMul/Softmax export
        # to every ONNX Runtime provider.
        att = torch.softmax(q.transpose(-1, -2) @ k / math.sqrt(d), dim=-1)  # (n, heads, hw, hw)
        out = (v @ att.transpose(-1, -2)).reshape(n, c, h, w)
        return x + self.proj(out)


class Level(nn.Module):
    def __init__(self, blocks: nn.ModuleList, attn: bool, c: int) -> None:
        super().__init__()
        self.blocks = blocks
        self.attn = nn.ModuleList([Attention(c) if attn else nn.Identity() for _ in blocks])


class UNet(nn.Module):
    """(x (N, C, S, S), noise_variance (N,), label (N,) int64) -> predicted noise (N, C, S, S)."""

    def __init__(
        self,
        channels: int = 1,
        size: int = 28,
        widths: tuple[int, ...] | list[int] = (32, 64, 128),
        blocks: int = 2,
        attention: tuple[int, ...] | list[int] = (2,),
        classes: int = 0,
        embed: int = 32,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        attention = [int(a) for a in attention]
        levels = len(widths)
        if size % 2 ** (levels - 1):
            raise ValueError(f"image size {size} is not divisible by 2^{levels - 1}")
        self.config: dict[str, Any] = {
            "channels": channels,
            "size": size,
            "widths": widths,
            "blocks": blocks,
            "attention": attention,
            "classes": classes,
            "embed": embed,
            "dropout": dropout,
        }
        e = 4 * widths[0]
        self.embed = NoiseEmbedding(embed)
        self.emb_mlp = nn.Sequential(nn.Linear(embed, e), nn.SiLU(), nn.Linear(e, e))
        self.classes = classes
        self.label = nn.Embedding(classes + 1, e) if classes else None
        self.stem = nn.Conv2d(channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c = widths[0]
        skips = []
        for i, w in enumerate(widths):
            mods = nn.ModuleList()
            for _ in range(blocks):
                mods.append(ResBlock(c, w, e, dropout))
                c = w
                skips.append(c)
            self.down.append(Level(mods, i in attention, w))
            if i < levels - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid1 = ResBlock(c, c, e, dropout)
        self.mid_attn = Attention(c)
        self.mid2 = ResBlock(c, c, e, dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(levels)):
            w = widths[i]
            mods = nn.ModuleList()
            for _ in range(blocks):
                mods.append(ResBlock(c + skips.pop(), w, e, dropout))
                c = w
            self.up.append(Level(mods, i in attention, w))
            if i > 0:
                self.upsample.append(nn.Conv2d(c, c, 3, padding=1))
        self.out_norm = nn.GroupNorm(groups_for(c), c)
        self.out = nn.Conv2d(c, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self, x: torch.Tensor, noise_variance: torch.Tensor, label: torch.Tensor
    ) -> torch.Tensor:
        e = self.emb_mlp(self.embed(noise_variance))
        if self.label is not None:
            e = e + self.label(label.clamp(0, self.classes))
        e = F.silu(e)
        h = self.stem(x)
        skips = []
        for i, level in enumerate(self.down):
            for block, attn in zip(level.blocks, level.attn, strict=True):
                h = attn(block(h, e))
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid2(self.mid_attn(self.mid1(h, e)), e)
        for i, level in enumerate(self.up):
            for block, attn in zip(level.blocks, level.attn, strict=True):
                h = attn(block(torch.cat([h, skips.pop()], dim=1), e))
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))
