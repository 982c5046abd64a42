"""Johnson et al.'s fast feed-forward style network ("Perceptual Losses for Real-Time Style
Transfer and Super-Resolution", 2016), with the changes later work settled on: instance
normalisation instead of batch normalisation (Ulyanov et al. 2016: the contrast of each image
is normalised away, so the style does not depend on the photo's exposure), and upsampling by
nearest-neighbour resize followed by a convolution instead of a transposed convolution
(Odena et al. 2016, "Deconvolution and Checkerboard Artifacts").

    image (1, 3, H, W) RGB in [0, 1]
      -> 9x9 conv, w0  -> 3x3 conv stride 2, w1 -> 3x3 conv stride 2, w2   (each + IN + ReLU)
      -> 5 residual blocks of two 3x3 convs at w2
      -> nearest x2 + 3x3 conv, w1 -> nearest x2 + 3x3 conv, w0            (each + IN + ReLU)
      -> 3x3 conv to 3 channels -> sigmoid -> stylized (1, 3, H, W) in [0, 1]

Every convolution pads by reflection (zeros would darken the borders).  H and W must be
multiples of ``MULTIPLE`` (4): two stride-2 convolutions and two x2 upsamplings then give back
exactly H x W; the plugin pads a photo by reflection to the next multiple and crops after.
Both sides must also be at least ``MIN_SIDE`` (8): reflection padding cannot pad more pixels
than a side has.

Widths (w0, w1, w2): Johnson's are (32, 64, 128) with a 9 x 9 output convolution.  The
studio's goal is a 1-megapixel photo in about a second on two CPU cores in ONNX Runtime, so
``DEFAULT_WIDTHS`` is (16, 32, 64), a quarter of the multiply-adds, and the output
convolution is 3 x 3: ONNX Runtime's blocked (NCHWc) convolutions run a 3-channel output
badly, and at 9 x 9 that one layer took a quarter of the whole network's time.  Measured with
``python -m gdl_studio_plugins.style.train.johnson --threads 2`` (1024 x 1024, random
weights) on this project's 2-core machine while another benchmark ran: (16, 32, 64) 1.16 s in
ONNX Runtime (torch 2.22 s), (32, 64, 128) 4.02 s (torch 7.68 s); with one thread, a 9 x 9
output layer made (16, 32, 64) 2.46 s instead of 1.50 s.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

MULTIPLE = 4  # H and W must be multiples of this (two stride-2 convolutions)
MIN_SIDE = 8  # reflection padding needs 2 pixels at a quarter of the size (and 5 at full)
DEFAULT_WIDTHS = (16, 32, 64)
DEFAULT_RES_BLOCKS = 5
DEFAULT_OUT_KERNEL = 3  # Johnson's 9 is slow in ONNX Runtime (see above)


class ConvLayer(nn.Module):
    """Reflection padding, a convolution, and (``norm``) instance norm + ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, norm: bool = True):
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride)
        self.norm = nn.InstanceNorm2d(cout, affine=True) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pad(x))
        return F.relu(self.norm(x)) if self.norm is not None else x


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with instance norm, the second without ReLU, plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.pad = nn.ReflectionPad2d(1)
        self.conv2 = nn.Conv2d(channels, channels, 3)
        self.norm2 = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm2(self.conv2(self.pad(self.conv1(x))))


class UpsampleConv(nn.Module):
    """Nearest-neighbour x2, then a 3x3 convolution with instance norm and ReLU: every output
    pixel gets the same number of kernel taps, so no checkerboard."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvLayer(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class TransformerNet(nn.Module):
    """The style network: ``forward(image)`` maps RGB in [0, 1] to RGB in [0, 1], same size
    (sides multiples of ``MULTIPLE``)."""

    def __init__(
        self,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        res_blocks: int = DEFAULT_RES_BLOCKS,
        out_kernel: int = DEFAULT_OUT_KERNEL,
    ) -> None:
        super().__init__()
        if len(widths) != 3 or min(widths) < 1 or res_blocks < 0 or out_kernel % 2 == 0:
            raise ValueError(
                "widths must be three positive numbers, res_blocks not negative, out_kernel odd"
            )
        w0, w1, w2 = (int(w) for w in widths)
        self.config: dict[str, Any] = {
            "widths": [w0, w1, w2],
            "res_blocks": int(res_blocks),
            "out_kernel": int(out_kernel),
        }
        self.down = nn.Sequential(
            ConvLayer(3, w0, 9), ConvLayer(w0, w1, 3, 2), ConvLayer(w1, w2, 3, 2)
        )
        self.res = nn.Sequential(*(ResidualBlock(w2) for _ in range(res_blocks)))
        self.up = nn.Sequential(UpsampleConv(w2, w1), UpsampleConv(w1, w0))
        self.out = ConvLayer(w0, 3, out_kernel, norm=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.down(image * 2.0 - 1.0)  # centred input: the first layer learns faster
        return torch.sigmoid(self.out(self.up(self.res(x))))


def check_size(height: int, width: int) -> None:
    """A ValueError unless both sides are multiples of ``MULTIPLE`` of at least
    ``MIN_SIDE``."""
    if min(height, width) < MIN_SIDE or height % MULTIPLE or width % MULTIPLE:
        raise ValueError(
            f"{height}x{width}: both sides must be multiples of {MULTIPLE}, at least {MIN_SIDE}"
        )


# ------------------------------------------------------------------------------- speed


def speed(widths: Sequence[int], side: int, threads: int, repeat: int = 3) -> dict[str, float]:
    """Median seconds of one ``side`` x ``side`` image through a randomly initialised network
    of ``widths`` in ONNX Runtime and in torch eager (``threads`` each): how the default
    widths were chosen.  Speed does not depend on the weights."""
    import tempfile
    from pathlib import Path

    from gdl_studio.training.bench import median_ms
    from gdl_studio.training.export import cpu_session

    from .export import export_graph

    torch.manual_seed(0)
    net = TransformerNet(widths).eval()
    x = torch.rand(1, 3, side, side)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.onnx"
        export_graph(net, path)
        session = cpu_session(path, threads)
        feed = {"image": x.numpy()}
        ort_ms = median_ms(lambda: session.run(None, feed), repeat, warmup=1)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            torch_ms = median_ms(lambda: net(x), repeat, warmup=1)
    finally:
        torch.set_num_threads(old)
    return {"onnxruntime_s": ort_ms / 1000, "torch_s": torch_ms / 1000}


def main(argv: list[str] | None = None) -> int:
    """``python -m gdl_studio_plugins.style.train.johnson``: time candidate widths."""
    p = argparse.ArgumentParser(prog="johnson", description="Time the style network's widths.")
    p.add_argument("--side", type=int, default=1024, help="image side (1024: one megapixel)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--widths", nargs="+", default=["16,32,64", "32,64,128"])
    args = p.parse_args(argv)
    for spec in args.widths:
        widths = [int(v) for v in spec.split(",")]
        t = speed(widths, args.side, args.threads)
        params = sum(p.numel() for p in TransformerNet(widths).parameters())
        print(
            f"widths {spec}: {params:,} parameters; {args.side}x{args.side} on {args.threads} "
            f"thread(s): ONNX Runtime {t['onnxruntime_s']:.2f} s, torch {t['torch_s']:.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
