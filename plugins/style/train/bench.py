"""`gdl-studio bench style --model <a network of the project's>`: the studio's pipeline on a
1-megapixel photo, and the network alone in ONNX Runtime against torch eager rebuilt from the
file's weights, torch timed in a process of its own
(:func:`gdl_studio.training.bench.in_own_process`).  Torch is needed here only (the [train]
extra), so this lives in train/ and ``bench.py`` imports it only for such a model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.jobs import TaskState
from gdl_studio.core.sample_photos import sample_photo
from gdl_studio.training.bench import has_torch, in_own_process

from ..bench import SIDE, paired_medians
from ..compute import Networks, finish, stylize


def bench_own(ctx: PluginContext, repeat: int) -> dict[str, Any]:
    """A network trained by the project (``--model van-gogh-auvers`` ...): the studio's
    pipeline on the 1-megapixel photo, and the network alone in ONNX Runtime against torch
    eager (rebuilt from the file's weights; needs the [train] extra), torch in its own
    process."""
    if not has_torch():
        raise JobError("bench style compares with torch: install the [train] extra")
    photo = Image.open(sample_photo("astronaut")).convert("RGB").resize((SIDE, SIDE))
    nets = Networks(ctx)
    state = TaskState()
    params = {"strength": 1.0, "preserve_colours": False}
    x = np.asarray(photo, np.float32).transpose(2, 0, 1)[None] / 255.0
    session = ctx.session()

    pipeline_s, _ = paired_medians(
        lambda: finish(stylize(nets, params, photo, state), photo, params, None),
        lambda: None,
        repeat,
    )
    ort_s, _ = paired_medians(lambda: session.run({"image": x}), lambda: None, repeat)
    side = in_own_process(time_torch, str(ctx.graph_path()), ctx.card()["architecture"], x, repeat)
    # The same network? The photo through both.
    diff = float(np.abs(session.run({"image": x})[0] - side["image"]).max())
    if diff > 1e-3:
        raise JobError(f"torch and ONNX Runtime disagree by {diff:.2g}: not the same network")
    torch_s = side["seconds"]
    return {
        "photo": f"{SIDE}x{SIDE}",
        "megapixel_s": round(pipeline_s, 3),
        "ort_s": round(ort_s, 3),
        "torch_s": round(torch_s, 3),
        "ratio": round(torch_s / ort_s, 2),
        "max_abs_diff": diff,
        "torch_threads": side["threads"],
        "torch_timed": "in its own process",
        "repeat": repeat,
        "provider": ctx.provider,
    }


def time_torch(
    path: str, architecture: dict[str, Any], x: np.ndarray, repeat: int
) -> dict[str, Any]:
    """Torch eager's side, run by :func:`in_own_process`: the network rebuilt from the
    graph's weights, its output for ``x`` (compared with ONNX Runtime's by the caller) and
    the median seconds per run on ``x``."""
    import torch

    from .export import torch_model_from_onnx

    module = torch_model_from_onnx(path, architecture).eval()

    def torch_run() -> Any:
        with torch.inference_mode():
            return module(torch.from_numpy(x))

    image = torch_run().numpy()
    seconds, _ = paired_medians(torch_run, lambda: None, repeat)
    return {"image": image, "seconds": seconds, "threads": torch.get_num_threads()}
