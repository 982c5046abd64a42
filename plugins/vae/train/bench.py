"""`gdl-studio bench vae`: decoder latency in ONNX Runtime (batch 1: one image under the
cursor of the live map; and a whole 15x15 map in one call) against torch eager on the same
decoder, and the encoder's latency.

Torch is only needed here (the [train] extra); the torch decoder is rebuilt from the shipped
ONNX file's weights, and its output is checked against ONNX Runtime before timing.  Torch
decodes one image with one thread (for a graph this small, more threads only add
synchronisation, and on a busy machine a thread waiting for a core stalls the others), a map
with its default thread count: each case at its best, so ``ratio`` does not flatter ONNX
Runtime.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.training.bench import median_ms

MAP_CELLS = 15 * 15


def bench(ctx: PluginContext, repeat: int = 50) -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        raise JobError("bench vae compares with torch: install the [train] extra") from None
    from gdl_studio_plugins.vae.compute import VaeModel

    from .export import torch_decoder_from_onnx

    model = VaeModel(ctx)
    card = ctx.card()
    if "architecture" not in card:
        raise JobError("bench vae needs the model's card.json (its architecture)")
    decoder = torch_decoder_from_onnx(ctx.graph_path("decoder"), card["architecture"])
    threads = torch.get_num_threads()
    out: dict[str, Any] = {"repeat": repeat}
    rng = np.random.default_rng(0)
    for batch, suffix in ((1, ""), (MAP_CELLS, "_map")):
        torch.set_num_threads(1 if batch == 1 else threads)
        out[f"torch_threads{suffix}"] = torch.get_num_threads()
        z = rng.standard_normal((batch, model.latent)).astype(np.float32)
        zt = torch.from_numpy(z)

        def run_torch(zt: Any = zt) -> Any:
            with torch.inference_mode():
                return decoder(zt)[0]

        diff = float(np.abs(run_torch().numpy() - model.decode(z)).max())
        if diff > 1e-3:
            raise JobError(f"torch and ONNX Runtime disagree by {diff:.2g}: not the same model")
        n = repeat if batch == 1 else max(5, repeat // 5)
        ort_ms = median_ms(lambda z=z: model.decode(z), n)
        torch_ms = median_ms(run_torch, n)
        out[f"decode_ms{suffix}"] = round(ort_ms, 3)
        out[f"torch_decode_ms{suffix}"] = round(torch_ms, 3)
        out[f"ratio{suffix}"] = round(torch_ms / ort_ms, 2)
        out[f"max_abs_diff{suffix}"] = diff
    torch.set_num_threads(threads)
    image = rng.integers(
        0, 256, (1, model.size, model.size) + ((3,) if model.channels == 3 else ())
    )
    out["encode_ms"] = round(median_ms(lambda: model.encode(image.astype(np.uint8)), repeat), 3)
    out["map_cells"] = MAP_CELLS
    return out
