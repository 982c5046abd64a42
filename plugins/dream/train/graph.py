"""EfficientNet-Lite0 as a DeepDream loss with its gradient, written so that ONNX can hold both.

ONNX has no autograd, so the module computes d(loss)/d(image) itself: every layer of
EfficientNet-Lite0 is a convolution with its batch norm folded in, optionally followed by
ReLU6 (the Lite models drop squeeze-and-excitation and swish), and the backward of a
convolution with respect to its input is the transposed convolution with the same weights.
The result is compared with torch autograd on the reference implementation by the tests
and by ``export`` before a file is written.

Input sizes must be multiples of 32 (the network's total stride): TensorFlow's "same"
padding is then the same fixed, possibly asymmetric, padding at every size, so the graph
needs no shape arithmetic.  The plugin pads each octave to a multiple of 32 by reflection.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 32  # total stride of the network: input sides must be multiples of it
BORDER = 2  # activations within this many cells of the edge are left out of the loss


@dataclass(frozen=True)
class ConvSpec:
    """A convolution with batch norm folded in, and how it pads ("same", TF style)."""

    stride: int
    groups: int
    pad: tuple[int, int]  # (before, after) on each spatial axis; fixed for sides % 32 == 0
    relu6: bool


def same_pad(kernel: int, stride: int) -> tuple[int, int]:
    """TF "same" padding of a side that the stride divides evenly: total k - s (k - 1 at
    stride 1), the extra cell after."""
    total = max(kernel - stride, 0)
    return total // 2, total - total // 2


def fold(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (eval-mode batch norm), computed
    in float64 and returned in the convolution's dtype."""
    dtype = conv.weight.dtype
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0]).double()
    if bn is not None:
        assert bn.running_var is not None and bn.running_mean is not None
        scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
        w = w * scale[:, None, None, None]
        b = (b - bn.running_mean.double()) * scale + bn.bias.detach().double()
    return w.to(dtype), b.to(dtype)


class DreamGraph(nn.Module):
    """loss and d(loss)/d(image) of EfficientNet-Lite0 for DeepDream.

    ``forward(image, layer_weights, class_weights)``: ``image`` is (N, 3, H, W), RGB in
    [-1, 1], H and W multiples of 32; ``layer_weights`` (L,) weights the mean squared
    activation after each block's depthwise convolution (block 0 = shallowest; the outer
    ``BORDER`` cells are left out, as Chollet does, so the edges do not dominate);
    ``class_weights`` (1000,) weights the ImageNet logits.  Returns ``loss`` (a scalar: the
    weighted sum) and ``grad`` (N, 3, H, W).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.specs: list[ConvSpec] = []
        weights: list[torch.Tensor] = []
        biases: list[torch.Tensor] = []

        def add(conv: nn.Conv2d, bn: nn.BatchNorm2d | None, relu6: bool) -> int:
            w, b = fold(conv, bn)
            k, s = int(conv.kernel_size[0]), int(conv.stride[0])
            self.specs.append(ConvSpec(s, int(conv.groups), same_pad(k, s), relu6))
            weights.append(w)
            biases.append(b)
            return len(self.specs) - 1

        self.stem = add(net._conv_stem, net._bn0, True)
        # Per block: (expand conv or -1, depthwise conv, project conv, residual?)
        self.blocks: list[tuple[int, int, int, bool]] = []
        for block in net._blocks:
            args = block._block_args
            expand = add(block._expand_conv, block._bn0, True) if args.expand_ratio != 1 else -1
            depthwise = add(block._depthwise_conv, block._bn1, True)
            project = add(block._project_conv, block._bn2, False)
            stride = args.stride[0] if isinstance(args.stride, list) else args.stride
            residual = bool(
                args.id_skip and stride == 1 and args.input_filters == args.output_filters
            )
            self.blocks.append((expand, depthwise, project, residual))
        self.head = add(net._conv_head, net._bn1, True)
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            self.register_buffer(f"w{i}", w)
            self.register_buffer(f"b{i}", b)
        self.register_buffer("fc_w", net._fc.weight.detach().clone())
        self.register_buffer("fc_b", net._fc.bias.detach().clone())

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    def _wb(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"w{i}"), getattr(self, f"b{i}")

    def _conv(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """The pre-activation of layer ``i``."""
        spec = self.specs[i]
        w, b = self._wb(i)
        before, after = spec.pad
        if before == after:
            return F.conv2d(x, w, b, spec.stride, before, 1, spec.groups)
        x = F.pad(x, (before, after, before, after))
        return F.conv2d(x, w, b, spec.stride, 0, 1, spec.groups)

    def _conv_input_grad(self, i: int, g: torch.Tensor) -> torch.Tensor:
        """d/d(input) of layer ``i``'s convolution, given d/d(pre-activation).

        That is the transposed convolution; at stride 1 it is written as a plain convolution
        with the kernel flipped (and in/out channels swapped), which ONNX Runtime runs
        several times faster than ConvTranspose on a CPU.  The flip is computed in the graph
        from the one stored weight, and constant-folded by ONNX Runtime at load time."""
        spec = self.specs[i]
        w, _ = self._wb(i)
        before, after = spec.pad
        if spec.stride == 1:
            k = w.shape[-1]
            if spec.groups == 1:
                w = w.transpose(0, 1)
            if k > 1:
                w = w.flip(2, 3)
            return F.conv2d(g, w, None, 1, k - 1 - before, 1, spec.groups)
        g = F.conv_transpose2d(g, w, None, spec.stride, 0, 0, spec.groups)
        return g[:, :, before : g.shape[2] - after, before : g.shape[3] - after]

    def _act(self, i: int, x: torch.Tensor, masks: dict[int, torch.Tensor]) -> torch.Tensor:
        """Layer ``i`` on ``x`` (convolution, then ReLU6 where it has one), keeping the
        ReLU6 derivative in ``masks[i]`` for the backward pass."""
        pre = self._conv(i, x)
        if not self.specs[i].relu6:
            return pre
        masks[i] = ((pre > 0) & (pre < 6)).to(pre.dtype)
        return pre.clamp(0.0, 6.0)

    def forward(
        self, image: torch.Tensor, layer_weights: torch.Tensor, class_weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        masks: dict[int, torch.Tensor] = {}  # ReLU6 derivative of each layer

        def act(i: int, x: torch.Tensor) -> torch.Tensor:
            return self._act(i, x, masks)

        # ---------------------------------------------------------------- forward
        x = act(self.stem, image)
        taps: list[torch.Tensor] = []
        for expand, depthwise, project, residual in self.blocks:
            inp = x
            h = act(expand, x) if expand >= 0 else x
            a = act(depthwise, h)
            taps.append(a)
            x = act(project, a)
            if residual:
                x = x + inp
        feat = act(self.head, x)
        pooled = feat.mean(dim=(2, 3))
        logits = pooled @ self.fc_w.t() + self.fc_b

        loss = (logits * class_weights).sum()
        tap_grads: list[torch.Tensor] = []
        for i, a in enumerate(taps):
            inner = a[:, :, BORDER:-BORDER, BORDER:-BORDER]
            count = torch.ones_like(inner).sum()
            loss = loss + layer_weights[i] * (inner * inner).sum() / count
            tap_grads.append(F.pad(inner * (2.0 * layer_weights[i] / count), [BORDER] * 4))

        # ---------------------------------------------------------------- backward
        cells = torch.ones_like(feat[:, :1]).sum(dim=(1, 2, 3), keepdim=True)
        g_pooled = class_weights.unsqueeze(0) @ self.fc_w  # (1, 1280)
        g = g_pooled[:, :, None, None] * masks[self.head] / cells
        g = self._conv_input_grad(self.head, g)
        for index in range(len(self.blocks) - 1, -1, -1):
            expand, depthwise, project, residual = self.blocks[index]
            g_out = g
            g = self._conv_input_grad(project, g_out) + tap_grads[index]
            g = self._conv_input_grad(depthwise, g * masks[depthwise])
            if expand >= 0:
                g = self._conv_input_grad(expand, g * masks[expand])
            if residual:
                g = g + g_out
        grad = self._conv_input_grad(self.stem, g * masks[self.stem])
        return loss, grad


def reference_loss(
    net: nn.Module, image: torch.Tensor, layer_weights: torch.Tensor, class_weights: torch.Tensor
) -> torch.Tensor:
    """The same loss on the reference implementation (efficientnet-lite-pytorch), for
    autograd to differentiate: the tests and ``export`` compare ``DreamGraph`` with it."""
    taps: list[torch.Tensor] = []
    hooks = [
        block._bn1.register_forward_hook(lambda _m, _i, out: taps.append(F.relu6(out)))
        for block in net._blocks
    ]
    try:
        logits = net(image)
    finally:
        for hook in hooks:
            hook.remove()
    loss = (logits * class_weights).sum()
    for w, a in zip(layer_weights, taps, strict=True):
        loss = loss + w * a[:, :, BORDER:-BORDER, BORDER:-BORDER].pow(2).mean()
    return loss
