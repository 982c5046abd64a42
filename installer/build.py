"""Build the one-folder GDL Studio app with PyInstaller: dist/GDL-Studio/.

    python installer/build.py [--gpu] [--dist DIR] [--work DIR] [--nice N] [--clean]

Needs the [installer] extra (`pip install -e '.[installer]'`).  Draws the icons, runs
installer/gdl_studio.spec, and on Linux puts the .desktop entry, its icon and
install-desktop-entry.sh into the app folder; then prints the folder and its size.  ``--gpu``
keeps ONNX Runtime's CUDA provider library (see installer/README.md for the trade-off).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SPEC = HERE / "gdl_studio.spec"
APP_NAME = "GDL-Studio"  # the folder COLLECT writes (NAME in the spec)
INFO_FILE = "bundle.json"  # what was built: flavour, versions, size (read by the tests)


def folder_size(path: Path) -> int:
    """Bytes of every file under ``path`` (symlinks not followed, so nothing counts twice)."""
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def ort_distribution() -> str:
    for dist in ("onnxruntime-gpu", "onnxruntime"):
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            continue
    return "none"


def build(dist: Path, work: Path, flavour: str, clean: bool = False) -> Path:
    """Run PyInstaller and finish the app folder; return it."""
    if importlib.util.find_spec("PyInstaller") is None:
        raise SystemExit("PyInstaller is missing: pip install -e '.[installer]'")
    sys.path.insert(0, str(HERE))
    from make_icon import write_all

    icons = write_all(work / "icons")
    env = dict(os.environ, GDL_INSTALLER_FLAVOUR=flavour, GDL_INSTALLER_ICONS=str(work / "icons"))
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
           "--distpath", str(dist), "--workpath", str(work), str(SPEC)]  # fmt: skip
    if clean:
        cmd.insert(3, "--clean")
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    app = dist / APP_NAME
    if sys.platform.startswith("linux"):
        shutil.copy2(HERE / "linux" / "gdl-studio.desktop", app)
        shutil.copy2(HERE / "linux" / "install-desktop-entry.sh", app)
        shutil.copy2(icons["png"], app / "gdl-studio.png")
    info = {
        "flavour": flavour,
        "platform": sys.platform,
        "onnxruntime": ort_distribution(),
        "python": sys.version.split()[0],
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_s": round(time.perf_counter() - t0, 1),
    }
    info["size_bytes"] = folder_size(app)
    (app / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true",
                    help="keep ONNX Runtime's CUDA provider library (+284 MB)")  # fmt: skip
    ap.add_argument("--dist", type=Path, default=ROOT / "dist", help="where the app folder goes")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "installer")
    ap.add_argument("--nice", type=int, default=0, help="lower the build's CPU priority by N")
    ap.add_argument("--clean", action="store_true", help="empty PyInstaller's cache first")
    args = ap.parse_args(argv)
    if args.nice and hasattr(os, "nice"):
        os.nice(args.nice)  # inherited by PyInstaller and the compilers it runs
    app = build(args.dist.resolve(), args.work.resolve(), "gpu" if args.gpu else "cpu", args.clean)
    info = json.loads((app / INFO_FILE).read_text(encoding="utf-8"))
    print(f"{app}  ({info['size_bytes'] / 1e6:.0f} MB unpacked, {info['flavour']} flavour, "
          f"{info['onnxruntime']}, built in {info['build_s']} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
