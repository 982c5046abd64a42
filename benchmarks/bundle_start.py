"""Start-up of the one-folder app (installer/) next to the source install, in one run.

    .venv/bin/python benchmarks/bundle_start.py [--bundle dist/GDL-Studio] [--runs 5] [--json]
        [--write-docs]

Times two commands as fresh processes, each from spawn until the process has exited, for the
bundle (`GDL-Studio/gdl-studio ...`) and the source install (`python -m gdl_studio ...`):
`--version` (the CLI path: no Qt, no plugins) and `--startup-probe` (the window: every plugin
discovered, the window shown offscreen and the event loop idle).  Build the bundle first with
`python installer/build.py`.  Reports medians and the bundle / source ratio, plus the bundle's
size and flavour.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {"version": ["--version"], "window": ["--startup-probe"]}


def one_run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-400:]}")
    return elapsed


def median_of(cmd: list[str], env: dict[str, str], runs: int) -> float:
    one_run(cmd, env)  # warm the OS file cache: "cold" means a new process, not a cold disk
    return statistics.median(one_run(cmd, env) for _ in range(runs))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=ROOT / "dist" / "GDL-Studio")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = ap.parse_args()
    exe = args.bundle / ("gdl-studio.exe" if sys.platform == "win32" else "gdl-studio")
    if not exe.is_file():
        raise SystemExit(f"no bundle at {args.bundle}: build it with `python installer/build.py`")
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env["GDL_STUDIO_HOME"] = tempfile.mkdtemp(prefix="gdl-bench-")
    info_file = args.bundle / "bundle.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}

    out: dict[str, object] = {}
    for name, flags in COMMANDS.items():
        bundle = median_of([str(exe), *flags], env, args.runs)
        source = median_of([sys.executable, "-m", "gdl_studio", *flags], env, args.runs)
        out[f"{name}_bundle_s"] = round(bundle, 3)
        out[f"{name}_source_s"] = round(source, 3)
        out[f"{name}_ratio"] = round(bundle / source, 2)
    out.update(
        runs=args.runs,
        bundle_mb=round(info.get("size_bytes", 0) / 1e6),
        flavour=info.get("flavour", "?"),
        onnxruntime=info.get("onnxruntime", "?"),
    )
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for name in COMMANDS:
            print(f"{name:<8} bundle {out[f'{name}_bundle_s']:.3f} s, source "
                  f"{out[f'{name}_source_s']:.3f} s (x{out[f'{name}_ratio']})")  # fmt: skip
        print(f"bundle: {out['bundle_mb']} MB, {out['flavour']} flavour, {out['onnxruntime']}")
    if args.write_docs:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _docs import update_section

        cmd = f"python benchmarks/bundle_start.py --runs {args.runs} --write-docs"
        update_section("bundle start", cmd, json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
