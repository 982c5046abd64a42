"""`gdl-studio bench vae`: decoder latency in ONNX Runtime (batch 1: one image under the
cursor of the live map; and a whole 15x15 map in one call) against torch eager on the same
decoder, and the encoder's latency.

Torch is only needed here (the [train] extra); the torch decoder is rebuilt from the shipped
ONNX file's weights, checked against ONNX Runtime, and timed in a process of its own
(:func:`gdl_studio.training.bench.in_own_process`).  Torch decodes one image with one thread
(for a graph this small, more threads only add synchronisation, and on a busy machine a
thread waiting for a core stalls the others), a map with its default thread count: each case
at its best, so ``ratio`` does not flatter ONNX Runtime.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.training.bench import has_torch, in_own_process, median_ms

MAP_CELLS = 15 * 15


def bench(ctx: PluginContext, repeat: int = 50) -> dict[str, Any]:
    if not has_torch():
        raise JobError("bench vae compares with torch: install the [train] extra")
    from gdl_studio_plugins.vae.compute import VaeModel

    model = VaeModel(ctx)
    card = ctx.card()
    if "architecture" not in card:
        raise JobError("bench vae needs the model's card.json (its architecture)")
    rng = np.random.default_rng(0)
    cases: dict[str, tuple[np.ndarray, int]] = {}
    ort_out: dict[str, np.ndarray] = {}
    ort_ms: dict[str, float] = {}
    for batch, suffix in ((1, ""), (MAP_CELLS, "_map")):
        z = rng.standard_normal((batch, model.latent)).astype(np.float32)
        n = repeat if batch == 1 else max(5, repeat // 5)
        cases[suffix] = (z, n)
        ort_out[suffix] = model.decode(z)
        ort_ms[suffix] = median_ms(lambda z=z: model.decode(z), n)
    side = in_own_process(time_torch, str(ctx.graph_path("decoder")), card["architecture"], cases)
    out: dict[str, Any] = {"repeat": repeat}
    for suffix in cases:
        out[f"torch_threads{suffix}"] = side["threads"][suffix]
        diff = float(np.abs(side["outputs"][suffix] - ort_out[suffix]).max())
        if diff > 1e-3:
            raise JobError(f"torch and ONNX Runtime disagree by {diff:.2g}: not the same model")
        torch_ms = side["ms"][suffix]
        out[f"decode_ms{suffix}"] = round(ort_ms[suffix], 3)
        out[f"torch_decode_ms{suffix}"] = round(torch_ms, 3)
        out[f"ratio{suffix}"] = round(torch_ms / ort_ms[suffix], 2)
        out[f"max_abs_diff{suffix}"] = diff
    image = rng.integers(
        0, 256, (1, model.size, model.size) + ((3,) if model.channels == 3 else ())
    )
    out["encode_ms"] = round(median_ms(lambda: model.encode(image.astype(np.uint8)), repeat), 3)
    out["map_cells"] = MAP_CELLS
    out["torch_timed"] = "in its own process"
    return out


def time_torch(
    graph: str, architecture: dict[str, Any], cases: dict[str, tuple[np.ndarray, int]]
) -> dict[str, Any]:
    """Torch eager's side, run by :func:`in_own_process`: the decoder rebuilt from the ONNX
    file's weights, its images for each case's latents (compared with ONNX Runtime's by the
    caller), ms per call over that case's number of runs, and the threads it ran with (one
    for a single image, torch's default for a batch)."""
    import torch

    from .export import torch_decoder_from_onnx

    decoder = torch_decoder_from_onnx(graph, architecture)
    default = torch.get_num_threads()
    outputs, ms, threads = {}, {}, {}
    for key, (z, n) in cases.items():
        torch.set_num_threads(1 if z.shape[0] == 1 else default)
        threads[key] = torch.get_num_threads()
        zt = torch.from_numpy(z)

        def run_torch(zt: Any = zt) -> Any:
            with torch.inference_mode():
                return decoder(zt)[0]

        outputs[key] = run_torch().numpy()
        ms[key] = median_ms(run_torch, n)
    return {"outputs": outputs, "ms": ms, "threads": threads}
