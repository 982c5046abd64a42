"""What does ``--precision bf16`` buy a training run on this machine? One training step (forward
under autocast, backward, optimiser step) of the shipped music transformer's and diffusion
U-Net's architectures, in float32 and in bfloat16 autocast, in one run (the rounds alternate,
so a busy machine slows both alike). Needs the ``[train]`` extra (torch).

    .venv/bin/python benchmarks/train_precision.py [--rounds 5] [--threads 2] [--write-docs]

Reports the median seconds per step and the fp32 / bf16 ratio, with the CPU features that
decide it (bfloat16 matrix units: AMX, AVX-512 BF16).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from _docs import update_section  # this folder: run as `python benchmarks/NAME.py`
from gdl_studio_plugins.diffusion.train.models import UNet
from gdl_studio_plugins.music.train.model import MusicTransformer

from gdl_studio.training.cli import autocast

CPU = torch.device("cpu")


def cpu_features() -> str:
    try:
        flags = next(
            line.split(":", 1)[1].split()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        )
    except (OSError, StopIteration):
        return "unknown"
    wanted = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")
    return ", ".join(f for f in wanted if f in flags) or "none of " + ", ".join(wanted)


def music_step() -> Callable[[str], None]:
    """The jsb-chorales architecture on 8 pieces of 1,024 tokens (its training batch)."""
    torch.manual_seed(0)
    model = MusicTransformer(65, 4, 256, 4, 8, 1, 768, 0.1)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x, y = torch.randint(1, 65, (8, 1024)), torch.randint(1, 65, (8, 1024))

    def step(precision: str) -> None:
        with autocast(CPU, precision):
            logits = model(x).float()
        loss = F.cross_entropy(logits.reshape(-1, 65), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def unet_step(channels: int, size: int) -> Callable[[str], None]:
    """The fashion-ddpm U-Net (widths 16, 32, 64; attention at the lowest level) on a batch
    of 64 noised images."""
    torch.manual_seed(0)
    model = UNet(channels, size, (16, 32, 64), 2, (2,), classes=10, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x, eps = torch.randn(64, channels, size, size), torch.randn(64, channels, size, size)
    var, label = torch.rand(64), torch.randint(0, 11, (64,))

    def step(precision: str) -> None:
        with autocast(CPU, precision):
            pred = model(x, var, label).float()
        loss = F.mse_loss(pred, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def median_s(step: Callable[[str], None], rounds: int) -> dict[str, float]:
    for precision in ("fp32", "bf16"):
        step(precision)  # warm-up: first-call allocation and kernel selection
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(rounds):
        for precision in times:
            t = time.perf_counter()
            step(precision)
            times[precision].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cases = {
        "music transformer 4x256, 8x1024 tokens": music_step,
        "diffusion U-Net, 64 x 1x28x28": lambda: unet_step(1, 28),
        "diffusion U-Net, 64 x 3x32x32": lambda: unet_step(3, 32),
    }
    lines = [
        f"CPU features: {cpu_features()}; torch {torch.__version__}, {args.threads} threads",
        f"{'training step':40} {'fp32 s':>8} {'bf16 s':>8} {'fp32/bf16':>10}",
    ]
    ratios = []
    for name, build in cases.items():
        s = median_s(build(), args.rounds)
        ratios.append(s["fp32"] / s["bf16"])
        lines.append(f"{name:40} {s['fp32']:8.3f} {s['bf16']:8.3f} {ratios[-1]:10.2f}")
        print(lines[-1], flush=True)
    # The advice follows from this run's numbers: bfloat16 matrix units (AMX) make bf16 pay,
    # AVX-512 BF16 alone converts more than it saves on these small layers.
    if min(ratios) > 1:
        lines.append("verdict: --precision bf16 trains faster on this machine")
    elif max(ratios) < 1:
        lines.append("verdict: --precision bf16 is slower on this machine: keep fp32 (the default)")
    else:
        lines.append("verdict: mixed: bf16 pays for some networks only (see the ratios)")
    body = "\n".join(lines)
    print(body)
    if args.write_docs:
        command = f"python benchmarks/train_precision.py --threads {args.threads} --write-docs"
        update_section("train-precision", command, body)


if __name__ == "__main__":
    main()
