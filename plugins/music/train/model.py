"""The decoder-only music transformer and the two graphs exported from it.

Pre-norm blocks of causal self-attention and a GELU feed-forward, with dropout on the
embeddings and on each residual branch (not on the attention weights: that forces PyTorch's
CPU attention onto its slow unfused path, three times slower to train here).  Positions are
relative: rotary embeddings (RoPE) turn the query and key of each head by an angle
proportional to the position, so attention scores depend on how far apart two tokens are, as
in the Music Transformer's relative attention, at no memory cost.  A learned *phase*
embedding (position modulo the tokenizer's period) tells the model which voice (chorales) or
which half of a pitch/duration pair (solo lines) comes next.

Attention is grouped-query (``kv_heads`` key/value heads shared by ``heads`` query heads): the
key/value cache, which a step reads and copies whole, is ``heads / kv_heads`` times smaller, so
a token costs nearly the same at 2,048 cached tokens as at 128.

``PrefillGraph`` (tokens -> logits and the cache) and ``StepGraph`` (one token and the cache
-> logits and the new token's key and value, which the caller appends) are what
``export.py`` writes to ONNX; they share the weights, and their state-dict names, with
:class:`MusicTransformer`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gdl_studio.training.export import load_onnx_weights

Cache = tuple[torch.Tensor, torch.Tensor]  # one layer's keys, values: [batch, kv_heads, time, dh]


def rope_angles(positions: torch.Tensor, head_dim: int, base: float) -> Cache:
    """cos and sin [time, head_dim / 2] of the rotary angles at ``positions`` (float)."""
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = positions.to(torch.float32)[:, None] * inv[None, :]
    return torch.cos(angles), torch.sin(angles)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of the last dimension of x [b, h, t, dh]."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, d: int, heads: int, kv_heads: int) -> None:
        super().__init__()
        if d % heads or heads % kv_heads:
            raise ValueError("d_model must divide by heads, and heads by kv_heads")
        self.heads, self.kv_heads, self.dh = heads, kv_heads, d // heads
        self.q = nn.Linear(d, d, bias=False)
        self.kv = nn.Linear(d, 2 * kv_heads * self.dh, bias=False)
        self.out = nn.Linear(d, d, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        past: Cache | None,
        fused: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [b, t, d] -> output [b, t, d] and this layer's keys and values (past + new)."""
        b, t, d = x.shape
        q = self.q(x).view(b, t, self.heads, self.dh).transpose(1, 2)
        k, v = self.kv(x).view(b, t, 2, self.kv_heads, self.dh).permute(2, 0, 3, 1, 4)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        group = self.heads // self.kv_heads
        s = k.shape[2]
        if fused:  # training and scoring: no cache, the fused kernel
            kx = (
                k[:, :, None].expand(b, self.kv_heads, group, s, self.dh).reshape(b, -1, s, self.dh)
            )
            vx = (
                v[:, :, None].expand(b, self.kv_heads, group, s, self.dh).reshape(b, -1, s, self.dh)
            )
            y = F.scaled_dot_product_attention(q, kx, vx, is_causal=True)
        else:
            # Plain ops that export to ONNX.  The query heads of one key/value head are
            # stacked as rows ([b, kv, group * t, dh]) so the cache is read as it is, never
            # copied out per query head: a step then costs the same at any cache length.
            qg = q.reshape(b, self.kv_heads, group * t, self.dh)
            scores = (qg @ k.transpose(-1, -2)) / math.sqrt(self.dh)
            if t > 1:  # new token i sees the past and the new tokens up to i
                new = torch.arange(t, device=x.device)
                keys = torch.arange(s, device=x.device)
                causal = (keys[None, :] <= (s - t + new)[:, None]).repeat(group, 1)
                scores = scores.masked_fill(~causal, float("-inf"))
            y = (torch.softmax(scores, dim=-1) @ v).reshape(b, self.heads, t, self.dh)
        y = y.transpose(1, 2).reshape(b, t, d)
        return self.out(y), k, v

    def step(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: Cache
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One new token x [b, 1, d] after ``past`` -> output [b, 1, d] and the new token's
        key and value only ([b, kv, 1, dh]): the cache is read where it lies and never
        copied (the caller appends the new key and value to its own buffers), so a step
        costs little more at 2,048 cached tokens than at 128.  The softmax over the past
        and the new token is written out so that the two parts are never concatenated."""
        b, _, d = x.shape
        group = self.heads // self.kv_heads
        q = self.q(x).view(b, 1, self.heads, self.dh).transpose(1, 2)
        k, v = self.kv(x).view(b, 1, 2, self.kv_heads, self.dh).permute(2, 0, 3, 1, 4)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        qg = q.reshape(b, self.kv_heads, group, self.dh) / math.sqrt(self.dh)
        s_past = qg @ past[0].transpose(-1, -2)  # [b, kv, group, past]
        s_new = (qg * k).sum(-1, keepdim=True)  # [b, kv, group, 1]
        top = torch.maximum(s_past.amax(-1, keepdim=True), s_new)
        e_past, e_new = torch.exp(s_past - top), torch.exp(s_new - top)
        y = (e_past @ past[1] + e_new * v) / (e_past.sum(-1, keepdim=True) + e_new)
        return self.out(y.reshape(b, 1, d)), k, v


class Block(nn.Module):
    def __init__(self, d: int, heads: int, kv_heads: int, ff: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = Attention(d, heads, kv_heads)
        self.norm2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: Cache | None, fused: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a, k, v = self.attn(self.norm1(x), cos, sin, past, fused)
        x = x + self.drop(a)
        x = x + self.drop(self.ff(self.norm2(x)))
        return x, k, v

    def step(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: Cache
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a, k, v = self.attn.step(self.norm1(x), cos, sin, past)
        x = x + self.drop(a)
        x = x + self.drop(self.ff(self.norm2(x)))
        return x, k, v


class MusicTransformer(nn.Module):
    """Token ids [batch, time] -> next-token logits [batch, time, vocab]."""

    def __init__(
        self,
        vocab_size: int,
        period: int = 4,
        d_model: int = 256,
        layers: int = 4,
        heads: int = 8,
        kv_heads: int = 2,
        ff: int = 768,
        dropout: float = 0.1,
        rope_base: float = 10000.0,
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "vocab_size": vocab_size,
            "period": period,
            "d_model": d_model,
            "layers": layers,
            "heads": heads,
            "kv_heads": kv_heads,
            "ff": ff,
            "dropout": dropout,
            "rope_base": rope_base,
        }
        self.embed = nn.Embedding(vocab_size, d_model)
        self.phase = nn.Embedding(period, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(d_model, heads, kv_heads, ff, dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    @property
    def head_dim(self) -> int:
        return int(self.config["d_model"] // self.config["heads"])

    def _inputs(self, ids: torch.Tensor, start: torch.Tensor | int) -> tuple[torch.Tensor, ...]:
        t = ids.shape[1]
        pos = torch.arange(t, device=ids.device) + start
        x = self.embed(ids) + self.phase(pos % self.config["period"])[None]
        cos, sin = rope_angles(pos, self.head_dim, self.config["rope_base"])
        return self.drop(x), cos, sin

    def forward(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Training and scoring: the whole sequence at once (fused causal attention);
        ``start``: the position of ids[:, 0] in its piece (a crop starts later)."""
        x, cos, sin = self._inputs(ids, start)
        for block in self.blocks:
            x, _, _ = block(x, cos, sin, None, True)
        return self.head(self.norm(x))

    def extend(
        self, ids: torch.Tensor, past: list[Cache] | None
    ) -> tuple[torch.Tensor, list[Cache]]:
        """``ids`` [batch, time] after the cached ``past`` (one (keys, values) pair per layer,
        each [batch, kv_heads, time, head_dim]; None: nothing before) -> logits [batch, time,
        vocab] and the cache of past + ids, in plain exportable ops."""
        start = past[0][0].shape[2] if past is not None else 0
        x, cos, sin = self._inputs(ids, start)
        cache = []
        for i, block in enumerate(self.blocks):
            x, k, v = block(x, cos, sin, past[i] if past is not None else None, False)
            cache.append((k, v))
        return self.head(self.norm(x)), cache

    def step(self, token: torch.Tensor, past: list[Cache]) -> tuple[torch.Tensor, list[Cache]]:
        """One token per row [batch] after ``past`` -> logits [batch, vocab] and the new
        token's key and value per layer (to append to the cache), as the step graph does."""
        x, cos, sin = self._inputs(token[:, None], past[0][0].shape[2])
        new = []
        for i, block in enumerate(self.blocks):
            x, k, v = block.step(x, cos, sin, past[i])
            new.append((k, v))
        return self.head(self.norm(x))[:, 0], new


def cache_names(layers: int, prefix: str = "") -> list[str]:
    """The graphs' cache inputs/outputs: key_0, value_0, key_1, ... (``prefix`` "past_" for
    the step graph's inputs).  One tensor per layer and kind: a step then reads and extends
    each as it is, where one stacked tensor would be sliced and re-stacked (copied) twice."""
    return [f"{prefix}{kind}_{i}" for i in range(layers) for kind in ("key", "value")]


class PrefillGraph(nn.Module):
    """tokens int64 [batch, time] -> logits [batch, time, vocab], then key_0, value_0, ...
    [batch, kv_heads, time, head_dim] per layer."""

    def __init__(self, model: MusicTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, cache = self.model.extend(tokens, None)
        return (logits, *(t for kv in cache for t in kv))


class StepGraph(nn.Module):
    """token int64 [batch], past_key_0, past_value_0, ... [batch, kv_heads, past, head_dim]
    -> logits [batch, vocab] and key_0, value_0, ... [batch, kv_heads, 1, head_dim]: the new
    token's key and value, which the caller appends to its cache."""

    def __init__(self, model: MusicTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, token: torch.Tensor, *cache: torch.Tensor) -> tuple[torch.Tensor, ...]:
        past = [(cache[2 * i], cache[2 * i + 1]) for i in range(len(cache) // 2)]
        logits, new = self.model.step(token, past)
        return (logits, *(t for kv in new for t in kv))


def torch_model_from_onnx(path: str | Path, card: dict[str, Any]) -> MusicTransformer:
    """The torch model of an exported graph, rebuilt from card.json's ``architecture`` and
    the file's initializers, in eval mode (``bench`` times torch on it, ``--init`` trains
    on from it)."""
    model = MusicTransformer(**card["architecture"])
    load_onnx_weights(PrefillGraph(model), path)
    return model.eval()


@torch.no_grad()
def sample_ids(
    model: MusicTransformer,
    prompt: list[int],
    n: int,
    allowed: list[torch.Tensor],
    temperature: float = 1.0,
    seed: int = 0,
) -> list[int]:
    """``n`` ids after ``prompt`` (BOS first), drawn with the KV cache and the grammar's masks
    (``allowed[phase]``, boolean over the vocabulary), from a generator of its own so a
    sample never shifts a training run's random stream."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    logits, cache = model.extend(torch.tensor([prompt], device=device), None)
    last = logits[0, -1].float().cpu()
    out: list[int] = []
    period = len(allowed)
    for i in range(n):
        phase = (len(prompt) - 1 + i) % period
        z = (last / temperature).masked_fill(~allowed[phase], float("-inf"))
        nxt = int(torch.multinomial(torch.softmax(z, dim=-1), 1, generator=g))
        out.append(nxt)
        logits, cache = model.extend(torch.tensor([[nxt]], device=device), cache)
        last = logits[0, -1].float().cpu()
    model.train(was_training)
    return out
