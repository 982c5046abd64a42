"""Start the studio window (`gdl-studio`, `gdl-studio-gui`, `python -m gdl_studio`)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

T0 = time.perf_counter()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gdl-studio", description="Open the GDL Studio window.")
    p.add_argument("--no-plugins", action="store_true", help="safe mode: load no plugins")
    p.add_argument("--plugin-dir", action="append", type=Path, default=[], metavar="DIR")
    p.add_argument("--startup-probe", action="store_true",
                   help="print the start-up time once the window is usable, then quit")  # fmt: skip
    return p.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from gdl_studio.core.host import Studio
    from gdl_studio.qt.main_window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("GDL Studio")
    studio = Studio.create(safe_mode=args.no_plugins, extra_folders=args.plugin_dir)
    window = MainWindow(studio)

    def report_crash(
        kind: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        # An unexpected error in a slot is shown, not fatal: results are already on disk.
        window.notify("".join(traceback.format_exception_only(kind, exc)).strip(), error=True)
        logging.getLogger("gdl_studio").error("".join(traceback.format_exception(kind, exc, tb)))

    sys.excepthook = report_crash
    window.show()
    if args.startup_probe:

        def probe() -> None:
            print(f"ready {time.perf_counter() - T0:.3f}", flush=True)
            window.close()

        QTimer.singleShot(0, probe)
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(main())
