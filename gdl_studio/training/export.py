"""Exporting a trained torch module to one ONNX file the studio can run.

The steps every exporter takes: export with a dynamic batch (the dynamo exporter, the
TorchScript one as the fallback), check the graph in ONNX Runtime against torch before it
replaces anything (``staged``), and rebuild the torch module from the file's weights
(``onnx_initializers``, for ``gdl-studio bench``).  What a model's inputs are and how closely
it must match is the plugin's business; its card.json is ``cards``'."""

from __future__ import annotations

import contextlib
import inspect
import logging
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gdl_studio.training.errors import TrainError

OPSET = 18
MAX_BATCH = 65536


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the exporters' chatter (missing torchvision ops, deprecations, renamed axes):
    what matters is checked against ONNX Runtime afterwards."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def forward_arg_names(model: nn.Module, n: int) -> list[str]:
    """The names of the first ``n`` parameters of ``model.forward``."""
    return list(inspect.signature(model.forward).parameters)[:n]


def onnx_export(
    model: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    batch_axes: Mapping[str, int] | None = None,
    prog: str = "export",
    opset: int = OPSET,
) -> str:
    """Export ``model(*args)`` to one self-contained file with a dynamic batch dimension;
    returns the exporter used (``"dynamo"`` or ``"torchscript"``).

    ``input_names`` name ``args`` in order; the batch is dimension 0 of every input and
    output unless ``batch_axes`` gives another (e.g. 1 for an LSTM state).  The
    torch.export-based exporter is tried first, the TorchScript one is the fallback (said on
    stderr as ``prog: ...``).  ``optimize=False`` and no constant folding keep every
    parameter an initializer named by its state-dict key, so that the torch module can be
    rebuilt from the file (``onnx_initializers``); ONNX Runtime does the fusions itself at
    load time."""
    axes = dict(batch_axes or {})
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    arg_names = forward_arg_names(model, len(args))
    try:
        with quiet():
            torch.onnx.export(
                model,
                args,
                str(path),
                dynamo=True,
                external_data=False,
                optimize=False,
                verbose=False,
                opset_version=opset,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_shapes={
                    arg: {axes.get(name, 0): batch}
                    for arg, name in zip(arg_names, input_names, strict=True)
                },
            )
        return "dynamo"
    except Exception as exc:  # the new exporter fails in many ways; the old one may not
        print(
            f"{prog}: the dynamo exporter failed ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); using the TorchScript "
            "exporter",
            file=sys.stderr,
        )
    with quiet():
        torch.onnx.export(
            model,
            args,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes={n: {axes.get(n, 0): "batch"} for n in [*input_names, *output_names]},
            do_constant_folding=False,
        )
    return "torchscript"


@contextlib.contextmanager
def staged(out: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``out`` (its folder created) to export and check a new file
    at; the caller moves it over ``out`` (``os.replace``) once its checks pass.  Whatever is
    left at the temporary path is removed, so a failed export leaves ``out`` as it was."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + suffix)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------ checks in ONNX Runtime


def cpu_session(path: Path, threads: int = 0) -> Any:
    """An ONNX Runtime session on the CPU (the reference every graph is checked on), quiet
    but for errors; ``threads``: intra-op threads (0: ONNX Runtime's choice)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b|, computed in float64."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def onnx_initializers(path: Path) -> dict[str, np.ndarray]:
    """The graph's initializers by name, also under the names of Identity nodes that forward
    them (the TorchScript exporter merges equal tensors that way): with ``onnx_export``'s
    naming, the state dict of the exported module."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    out = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in out:
            out[node.output[0]] = out[node.input[0]]
    return out


def fixed_dims(shape: Sequence[Any]) -> list[int | None]:
    """Fixed dimensions as ints, symbolic ones (the batch) as None."""
    return [d if isinstance(d, int) else None for d in shape]


def check_signature(
    session: Any,
    inputs: Mapping[str, tuple[str, Sequence[Any]]],
    outputs: Mapping[str, Sequence[Any]],
) -> None:
    """The graph's names, input element types (``"tensor(float)"``...) and fixed dimensions
    are what the app expects; a ``TrainError`` says what differs."""
    real_in = {i.name: i for i in session.get_inputs()}
    if set(real_in) != set(inputs):
        raise TrainError(f"the graph's inputs are {sorted(real_in)}, expected {sorted(inputs)}")
    for name, (dtype, shape) in inputs.items():
        got = real_in[name]
        if got.type != dtype or fixed_dims(got.shape) != fixed_dims(shape):
            raise TrainError(f"input {name!r} is {got.type} {got.shape}, expected {dtype} {shape}")
    real_out = {o.name: o for o in session.get_outputs()}
    if set(real_out) != set(outputs):
        raise TrainError(f"the graph's outputs are {sorted(real_out)}, expected {sorted(outputs)}")
    for name, shape in outputs.items():
        if fixed_dims(real_out[name].shape) != fixed_dims(shape):
            raise TrainError(f"output {name!r} has shape {real_out[name].shape}, expected {shape}")


def load_onnx_weights(
    model: nn.Module, path: str | Path, optional: Sequence[str] = ()
) -> nn.Module:
    """``model`` with its state dict read from the ONNX file's initializers (named as
    ``onnx_export`` leaves them), in eval mode; entries whose key ends with one of
    ``optional`` (e.g. ``num_batches_tracked``) may be absent and keep their value.  A
    missing or misshapen tensor is a ``ValueError``."""
    tensors = onnx_initializers(Path(path))
    state = model.state_dict()
    missing = [k for k in state if k not in tensors and not k.endswith(tuple(optional))]
    if missing:
        raise ValueError(f"{path}: no initializers for {', '.join(missing)}")
    loaded: dict[str, torch.Tensor] = {}
    for key, ref in state.items():
        if key in tensors:
            value = torch.from_numpy(np.array(tensors[key], copy=True))
            if value.shape != ref.shape:
                raise ValueError(
                    f"{path}: {key} is {tuple(value.shape)}, the architecture needs "
                    f"{tuple(ref.shape)}"
                )
            loaded[key] = value.to(ref.dtype)
    model.load_state_dict(loaded, strict=False)
    return model.eval()
