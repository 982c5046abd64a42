"""`gdl-studio bench style --model <a network of the project's>`: the studio's pipeline on a
1-megapixel photo, and the network alone in ONNX Runtime against torch eager rebuilt from the
file's weights, in the same run.  Torch is needed here only (the [train] extra), so this lives
in train/ and ``bench.py`` imports it only for such a model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.jobs import TaskState
from gdl_studio.core.sample_photos import sample_photo

from ..bench import SIDE, paired_medians
from ..compute import Networks, finish, stylize
from .export import torch_model_from_onnx


def bench_own(ctx: PluginContext, repeat: int) -> dict[str, Any]:
    """A network trained by the project (``--model van-gogh-auvers`` ...): the studio's
    pipeline on the 1-megapixel photo, and the network alone in ONNX Runtime against torch
    eager (rebuilt from the file's weights; needs the [train] extra), in the same run."""
    photo = Image.open(sample_photo("astronaut")).convert("RGB").resize((SIDE, SIDE))
    nets = Networks(ctx)
    state = TaskState()
    params = {"strength": 1.0, "preserve_colours": False}
    x = np.asarray(photo, np.float32).transpose(2, 0, 1)[None] / 255.0
    module = torch_model_from_onnx(ctx.graph_path(), ctx.card()["architecture"]).eval()
    session = ctx.session()

    def torch_run() -> Any:
        with torch.inference_mode():
            return module(torch.from_numpy(x))

    with torch.inference_mode():
        diff = float(
            np.abs(session.run({"image": x})[0] - module(torch.from_numpy(x)).numpy()).max()
        )
    if diff > 1e-3:
        raise JobError(f"torch and ONNX Runtime disagree by {diff:.2g}: not the same network")
    pipeline_s, _ = paired_medians(
        lambda: finish(stylize(nets, params, photo, state), photo, params, None),
        lambda: None,
        repeat,
    )
    ort_s, torch_s = paired_medians(lambda: session.run({"image": x}), torch_run, repeat)
    return {
        "photo": f"{SIDE}x{SIDE}",
        "megapixel_s": round(pipeline_s, 3),
        "ort_s": round(ort_s, 3),
        "torch_s": round(torch_s, 3),
        "ratio": round(torch_s / ort_s, 2),
        "max_abs_diff": diff,
        "torch_threads": torch.get_num_threads(),
        "repeat": repeat,
        "provider": ctx.provider,
    }
