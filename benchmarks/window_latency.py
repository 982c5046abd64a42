"""Click-to-pixels latency in the studio window: from pressing Generate until the result is
painted on the canvas (offscreen Qt; includes validation, the ONNX call, the history write and
the repaint).

    .venv/bin/python benchmarks/window_latency.py PLUGIN [--set NAME=VALUE ...] [--runs 20]
        [--json] [--write-docs]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import median_p90, report  # beside this script (benchmarks/ is not a package)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("plugin")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["GDL_STUDIO_HOME"] = tempfile.mkdtemp(prefix="gdl-latency-")
    from PySide6.QtWidgets import QApplication

    from gdl_studio.core.host import Studio
    from gdl_studio.qt.main_window import MainWindow

    app = QApplication([])
    win = MainWindow(Studio.create())
    win.resize(1200, 800)
    win.show()
    if not win.select_plugin(args.plugin):
        raise SystemExit(f"no plugin {args.plugin!r}")
    win.panel.set_values(dict(s.split("=", 1) for s in args.set))
    times = []
    for i in range(args.runs + 2):  # two warm-up runs: session creation is not a click
        t0 = time.perf_counter()
        if not win.generate():
            raise SystemExit(
                "generate refused: " + win.messages.item(win.messages.count() - 1).text()
            )
        while win.runner.running or win.current is None or win.current[2] is None:
            app.processEvents()
        win.canvases.currentWidget().repaint()  # the pixels, not just the model call
        if i >= 2:
            times.append((time.perf_counter() - t0) * 1000)
        win.current = None
    median, p90 = median_p90(times, 1)
    out = {
        "plugin": args.plugin,
        "params": args.set,
        "click_to_pixels_ms_median": median,
        "click_to_pixels_ms_p90": p90,
        "runs": args.runs,
    }
    name = f"window latency: {args.plugin} {' '.join(args.set)}".strip()
    command = "python benchmarks/window_latency.py " + " ".join(
        [args.plugin, *[f"--set {s}" for s in args.set], f"--runs {args.runs}", "--write-docs"]
    )
    report(out, args.json, args.write_docs, name, command)
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
