"""Open the real studio window, generate once, and save a screenshot of the X screen.

    QT_QPA_PLATFORM=xcb python scripts/screenshot.py --out docs/screenshot.png [--plugin PLUGIN]
        [--plugin-dir DIR] [--set NAME=VALUE ...] [--model M] [--hover FX,FY]

Used by the Xvfb screenshot test and to make the README's screenshot.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--plugin")
    ap.add_argument("--plugin-dir", type=Path, action="append", default=[])
    ap.add_argument("--no-builtin", action="store_true")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--size", default="1280x800")
    ap.add_argument("--no-run", action="store_true", help="select the plugin, do not generate")
    ap.add_argument("--model", help="the model to run (default: the plugin's default)")
    ap.add_argument(
        "--hover", help="then move the mouse to FX,FY (fractions of the canvas) before the shot"
    )
    args = ap.parse_args()

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from gdl_studio.core.host import Studio
    from gdl_studio.qt.main_window import MainWindow

    app = QApplication([sys.argv[0]])
    studio = Studio.create(include_builtin=not args.no_builtin,
                           include_entry_points=not args.no_builtin,
                           extra_folders=args.plugin_dir)  # fmt: skip
    win = MainWindow(studio)
    w, h = (int(x) for x in args.size.split("x"))
    win.resize(w, h)
    win.move(0, 0)
    win.show()
    if args.plugin:
        if not win.select_plugin(args.plugin):
            print(f"no plugin {args.plugin}", file=sys.stderr)
            return 1
        if args.model:
            win.model_combo.setCurrentIndex(win.model_combo.findData(args.model))
        win.panel.set_values(dict(s.split("=", 1) for s in args.set))
        loop = QEventLoop()
        win.runner.running_changed.connect(lambda running: running or loop.quit())
        if not args.no_run and win.generate():
            QTimer.singleShot(60_000, loop.quit)
            loop.exec()
    # Let the window paint, then grab what the X server really shows (from inside the event
    # loop: the backing store is flushed to the screen by the loop).
    shot_holder = []

    def hover() -> None:
        from PySide6.QtCore import QPoint
        from PySide6.QtTest import QTest

        canvas = win.canvases.currentWidget()
        fx, fy = (float(x) for x in args.hover.split(","))
        QTest.mouseMove(canvas, QPoint(int(fx * canvas.width()), int(fy * canvas.height())))
        print(f"hovered {type(canvas).__name__}")

    if args.hover:
        QTimer.singleShot(300, hover)

    def grab() -> None:
        shot_holder.append(app.primaryScreen().grabWindow(0))
        app.quit()

    QTimer.singleShot(800, grab)
    app.exec()
    shot = shot_holder[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not shot.save(str(args.out)):
        print("could not save the screenshot", file=sys.stderr)
        return 1
    print(f"{args.out} {shot.width()}x{shot.height()} platform={app.platformName()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
