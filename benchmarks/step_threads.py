"""How many ONNX Runtime threads should a per-token step graph get? The text LSTM's and the
music transformer's shipped step graphs on 1, 2 and the default number of threads, in one
run (the rounds alternate, so a busy machine slows each setting alike).

    .venv/bin/python benchmarks/step_threads.py [--rounds 7] [--write-docs]

Reports the median milliseconds per step (batch 1; the music step with 128 and 2,048 cached
tokens), which is what GraphSpec.threads in each plugin.toml is chosen from.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from _docs import update_section  # this folder: run as `python benchmarks/NAME.py`

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"1 thread": 1, "2 threads": 2, "default": 0}


def session(path: Path, threads: int) -> Any:
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def cases() -> dict[str, tuple[Path, dict[str, np.ndarray]]]:
    text = ROOT / "assets" / "text" / "shakespeare" / "model.onnx"
    state = np.zeros((2, 1, 512), np.float32)
    out = {"text lstm 2x512 int8": (text, {"token": np.zeros(1, np.int64), "h": state, "c": state})}
    music = ROOT / "assets" / "music" / "jsb-chorales" / "step.onnx"
    probe = session(music, 1)
    rng = np.random.default_rng(0)
    for cached in (128, 2048):
        feeds: dict[str, np.ndarray] = {"token": np.array([5], np.int64)}
        for inp in probe.get_inputs()[1:]:
            shape = [1, inp.shape[1], cached, inp.shape[3]]
            feeds[inp.name] = rng.standard_normal(shape).astype(np.float32)
        out[f"music step, {cached} cached"] = (music, feeds)
    return out


def median_ms(fns: dict[str, Callable[[], Any]], calls: int, rounds: int) -> dict[str, float]:
    for fn in fns.values():
        for _ in range(20):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            for _ in range(calls):
                fn()
            times[k].append((time.perf_counter() - t) * 1000 / calls)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args()
    lines = [f"{'graph':28} " + " ".join(f"{k:>10}" for k in SETTINGS) + "   (ms per step)"]
    for name, (path, feeds) in cases().items():
        sessions = {k: session(path, n) for k, n in SETTINGS.items()}
        fns = {k: (lambda s=s, f=feeds: s.run(None, f)) for k, s in sessions.items()}
        calls = 300 if "text" in name else 60
        ms = median_ms(fns, calls, args.rounds)
        lines.append(f"{name:28} " + " ".join(f"{ms[k]:10.3f}" for k in SETTINGS))
    body = "\n".join(lines)
    print(body)
    if args.write_docs:
        update_section("step-threads", "python benchmarks/step_threads.py --write-docs", body)


if __name__ == "__main__":
    main()
