"""What the training-code tests share: one torch thread, the trainers run as functions, as
commands and under torchrun (two gloo processes), and checkpoints read back.

Imports no torch at module level: the test modules skip themselves without the [train]
extra."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

# A torchrun worker: runs the trainer ``__MODULE__`` in-process on its rank, logs every
# checkpoint write to saves-rank<R>.txt and saves ``__WEIGHTS__`` to weights-rank<R>.pt.
DDP_WORKER = """
import os, sys
from pathlib import Path
import torch
import __MODULE__ as trainer_module
from gdl_studio.training import checkpoints
from gdl_studio.training.distributed import setup, teardown

rank = int(os.environ["RANK"])
argv = sys.argv[1:]
out = Path(argv[argv.index("--out") + 1])
saved = checkpoints.atomic_save

def counting_save(obj, path):
    with open(out.parent / f"saves-rank{rank}.txt", "a") as f:
        f.write(f"{path}\\n")
    saved(obj, path)

checkpoints.atomic_save = counting_save
args = trainer_module.build_parser().parse_args(argv)
d = setup(args.device, args.threads)
trainer = trainer_module.prepare(argv, args, d)
assert trainer.run() == 0
torch.save(__WEIGHTS__, out.parent / f"weights-rank{rank}.pt")
teardown(d)
"""


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Single-threaded torch: fast on a shared machine, and bit-for-bit repeatable (the
    resume tests rely on it)."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)


def words(*parts: str | Path) -> list[str]:
    """Command-line words: each string split at spaces, each path one word."""
    out: list[str] = []
    for part in parts:
        out += [str(part)] if isinstance(part, Path) else part.split()
    return out


def exit_code(main: Callable[[list[str]], int], argv: list[str]) -> int:
    """A trainer's ``main(argv)``, its SystemExit turned into the exit code."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def load(path: Path) -> dict[str, Any]:
    """A checkpoint, read as ``--resume`` reads it (weights_only)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_python(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """``python ARGS`` from the repository root, one OpenMP thread, output captured."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def torchrun_two(
    folder: Path, module: str, weights: str, argv: list[str], timeout: float = 180
) -> subprocess.CompletedProcess:
    """The trainer ``module`` in two gloo processes under torchrun (``DDP_WORKER``, written
    to ``folder``); ``weights``: the expression over ``trainer`` each rank saves."""
    script = folder / "ddp_worker.py"
    script.write_text(DDP_WORKER.replace("__MODULE__", module).replace("__WEIGHTS__", weights))
    return run_python(
        [
            *words("-m torch.distributed.run --nproc_per_node 2 --master_addr 127.0.0.1"),
            *words("--master_port", str(free_port())),
            str(script),
            *argv,
        ],
        timeout,
    )


def copy_plugin(root: Path, plugin: str) -> Path:
    """A copy of the built-in plugin ``plugin`` under root/plugins/, where a test exports its
    own tiny model and then lists it with :func:`studio_with_models`."""
    import shutil

    folder = root / "plugins" / plugin
    shutil.copytree(REPO / "plugins" / plugin, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def studio_with_models(folder: Path, table: str) -> Any:
    """A studio whose only plugin is the copy at ``folder``, its [[models]] replaced by
    ``table`` (as an exporter prints it)."""
    from gdl_studio.core.host import Studio

    manifest = (folder / "plugin.toml").read_text().split("\n[[models]]\n")[0]
    (folder / "plugin.toml").write_text(manifest.rstrip() + "\n\n" + table + "\n")
    studio = Studio.create(include_builtin=False, include_entry_points=False,
                           extra_folders=[folder.parent])  # fmt: skip
    assert studio.registry.get(folder.name).ok, studio.registry.get(folder.name).state
    return studio
