"""Train the chorale model on a lent GPU machine in one short call, and bring the best back.

The device machine (see CONTRIBUTING.md, "Training on a lent GPU") has PyTorch, onnx and
ONNX Runtime but no registry and no project install, and a session gets ~15 minutes of it in
all.  So one call does everything: a short probe of each configuration (all at once, as they
then train) measures its steps per second; each then trains, side by side on the one GPU,
for as many steps as fit ``--minutes`` (the cosine schedule ends when the time does); the
one with the lowest validation NLL is exported, and its graphs, card and every run's log
come back under ``--out``.  Here, afterwards::

    cp -r OUT/jsb-chorales assets/music/ && python scripts/model_card.py music jsb-chorales \\
        --bench --data ../shared/data/midi/jsb-chorales/Jsb16thSeparated.npz
    # then plugin.toml's sha256s and SHA256SUMS (scripts/update_sha256sums.py)

The call (the device tool's ``run``; carry ``.whl`` with a mido wheel and ``.carry`` with
Jsb16thSeparated.npz)::

    python3 scripts/device_chorales.py --data .carry/Jsb16thSeparated.npz --out $OUT

On a machine without a GPU ``--device cpu --minutes 0.5 --tiny`` runs the same path (the
test does), so the script is known to work before device time is spent on it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODULE = "gdl_studio_plugins.music.train.train"
# Each configuration stays within the 25 MB a shipped model may take (both graphs hold every
# weight: about 3 M parameters at most).
CONFIGS = {
    "d20": "--d-model 256 --layers 4 --ff 768 --dropout 0.2",
    "d30": "--d-model 256 --layers 4 --ff 768 --dropout 0.3",
    "deep": "--d-model 256 --layers 5 --ff 1024 --dropout 0.3",
}
TINY = "--d-model 16 --heads 2 --layers 1 --ff 32 --max-len 64"
PROBE_STEPS = 30


def python_path(site: Path) -> str:
    """A folder that makes ``gdl_studio_plugins`` importable from the checkout, as the
    project's install would (plugins/ installs under that name); with ``gdl_studio``."""
    site.mkdir(parents=True, exist_ok=True)
    for name, folder in (("gdl_studio_plugins", "plugins"), ("gdl_studio_assets", "assets")):
        link = site / name
        if not link.exists():
            link.symlink_to(REPO / folder, target_is_directory=True)
    wheels = sorted((REPO / ".whl").glob("*.whl"))
    if wheels:  # e.g. mido, which the device image lacks
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
             "--no-compile", "--target", str(site), *map(str, wheels)],
            check=True,
        )  # fmt: skip
    return os.pathsep.join([str(site), str(REPO)])


def launch(args: argparse.Namespace, env: dict[str, str], name: str, extra: list[str]) -> Any:
    out = args.work / name
    log = open(args.work / f"{name}.out", "a", encoding="utf-8")  # noqa: SIM115 (lives on)
    cmd = [
        sys.executable, "-m", MODULE, "--scheme", "chorale", "--data", str(args.data),
        "--out", str(out), "--device", args.device, "--batch", str(args.batch),
        "--precision", args.precision, *extra,
    ]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def checkpoint(path: Path) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))  # gdl_studio, from the checkout
    from gdl_studio.training.checkpoints import load_checkpoint

    return load_checkpoint(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="Jsb16thSeparated.npz")
    p.add_argument("--out", type=Path, required=True, help="where the results go ($OUT)")
    p.add_argument("--minutes", type=float, default=8.0, help="training time, probe excluded")
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--precision", default="bf16")
    p.add_argument("--only", nargs="*", choices=sorted(CONFIGS), help="some configurations")
    p.add_argument("--tiny", action="store_true", help="tiny models (checking the script)")
    args = p.parse_args(argv)
    args.work = Path(tempfile.mkdtemp(prefix="chorales-"))
    env = {**os.environ, "PYTHONPATH": python_path(args.work / "site"), "PYTHONUNBUFFERED": "1"}
    configs = {k: CONFIGS[k] for k in args.only or CONFIGS}
    common = "--val-every 200 --save-every 500 --warmup 200 --sample-bars 2 --threads 2"
    shape = {k: (TINY if args.tiny else v).split() for k, v in configs.items()}

    # 1. Probe: every configuration at once, as they will train, for PROBE_STEPS steps.
    t0 = time.monotonic()
    probes = {
        k: launch(args, env, f"probe-{k}", [*shape[k], *common.split(), "--steps", "100000",
                                            "--stop-after", str(PROBE_STEPS)])
        for k in configs
    }  # fmt: skip
    rate = {}
    for k, proc in probes.items():
        if proc.wait() != 0:
            print((args.work / f"probe-{k}.out").read_text()[-3000:])
            return 1
        ck = checkpoint(args.work / f"probe-{k}" / "checkpoint.pt")
        rate[k] = ck["step"] / max(ck["seconds"], 1e-6)
    print(f"probe {time.monotonic() - t0:.0f} s; steps/s: "
          + ", ".join(f"{k} {v:.1f}" for k, v in rate.items()))  # fmt: skip

    # 2. Train: each for the steps its rate fits in the time (validation takes a share).
    runs = {}
    for k in configs:
        steps = max(PROBE_STEPS + 1, int(rate[k] * 60 * args.minutes * 0.85))
        print(f"{k}: {steps} steps ({' '.join(shape[k])})")
        runs[k] = launch(args, env, k, [*shape[k], *common.split(), "--steps", str(steps),
                                        "--time-limit", str(args.minutes * 1.15)])  # fmt: skip
    for proc in runs.values():
        proc.wait()

    # 3. The best by validation NLL, exported; every log back.
    best_val = {}
    for k in configs:
        best = args.work / k / "best.pt"
        if best.exists():
            best_val[k] = min(v["val_nll"] for v in checkpoint(best)["val_history"])
    args.out.mkdir(parents=True, exist_ok=True)
    for k in configs:  # the device tool brings back 8 files: the logs, the model, a summary
        if (args.work / k / "log.csv").exists():
            shutil.copy(args.work / k / "log.csv", args.out / f"{k}.log.csv")
    summary = {"minutes": args.minutes, "steps_per_s": rate, "best_val_nll": best_val}
    if not best_val:
        print(json.dumps(summary))
        return 1
    winner = min(best_val, key=best_val.__getitem__)
    summary["exported"] = winner
    export = [sys.executable, "-m", "gdl_studio_plugins.music.train.export", "--checkpoint",
              str(args.work / winner / "best.pt"), "--out", str(args.out / "jsb-chorales"),
              "--default"]  # fmt: skip
    subprocess.run(export, env=env, check=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
