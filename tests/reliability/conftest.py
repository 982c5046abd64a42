"""Helpers for the reliability suite: child processes with resource limits, shipped models."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "assets"
LINUX = sys.platform.startswith("linux")


def shipped_models() -> list[Path]:
    """Every ONNX model under assets/, found when the tests run (more are added over time)."""
    return sorted(ASSETS.rglob("*.onnx"))


def run_child(
    code: str,
    *,
    memory_mb: int | None = 1536,
    cpu_s: int | None = 60,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    **kwargs,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with an address-space and CPU-time limit.

    A child that dies of a signal has a negative ``returncode``; a child that overruns
    ``timeout`` is killed and the test fails with what it printed so far.
    """

    def limits() -> None:  # runs in the child, before the interpreter starts
        import resource

        if memory_mb is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
        if cpu_s is not None:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))

    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), full_env.get("PYTHONPATH", "")])
    full_env.update(env or {})
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), *(args or [])],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            cwd=ROOT,
            preexec_fn=limits if LINUX else None,
            check=False,
            **kwargs,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout
        pytest.fail(f"the child process ran past {timeout} s; its output:\n{out}")


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    return (
        f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
        f"\n--- stderr\n{proc.stderr[-4000:]}"
    )
