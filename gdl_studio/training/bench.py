"""Timing helpers for ``gdl-studio bench`` commands.

Imports no torch: a plugin's ``bench`` runs inside the studio's process and says itself when
the ``[train]`` extra is missing."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def median_ms(fn: Callable[[], Any], repeat: int, warmup: int = 3) -> float:
    """The median wall time of ``repeat`` calls of ``fn``, in milliseconds, after ``warmup``
    untimed calls (first calls allocate, compile kernels and fill caches)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def time_module(module: Any, cases: dict[str, tuple[Any, ...]], repeat: int) -> dict[str, Any]:
    """For the torch side of a bench (inside :func:`in_own_process`): ``module``'s output for
    each case's numpy inputs (``None`` inputs left out) and its median ms per call."""
    import torch

    outputs, ms = {}, {}
    for key, case in cases.items():
        args = tuple(torch.from_numpy(a) for a in case if a is not None)

        def call(args: tuple[Any, ...] = args) -> Any:
            with torch.inference_mode():
                return module(*args)

        outputs[key] = call().numpy()
        ms[key] = median_ms(call, repeat)
    return {"outputs": outputs, "ms": ms}


def has_torch() -> bool:
    """Whether torch (the [train] extra) is installed, without importing it."""
    return importlib.util.find_spec("torch") is not None


def in_own_process(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` run in a fresh (spawned) Python process; its result, or its exception.

    Torch is timed there, away from the caller's ONNX Runtime sessions: two thread pools in one
    process (ONNX Runtime's workers spin after each run, torch's OpenMP team between ops) can
    take turns at each other's cores, and on a busy 2-core machine torch's step read many
    times slower after ONNX Runtime had run in the same process (on a quiet one it did not).
    Apart, each engine is timed as its users run it: the studio never loads torch.  ``fn``
    must be a module-level function; its arguments and result are pickled."""
    # The child imports ``fn`` by its module's name.  A folder-installed plugin's modules live
    # under packages the studio made at run time (core.discovery: gdl_user_plugins.<folder>),
    # which a fresh interpreter lacks: their search paths go along (_adopt_packages).
    parts = fn.__module__.split(".")
    packages = []
    for i in range(1, len(parts)):
        module = sys.modules.get(".".join(parts[:i]))
        packages.append((".".join(parts[:i]), list(getattr(module, "__path__", []))))
    with ProcessPoolExecutor(
        1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_adopt_packages,
        initargs=(packages,),
    ) as pool:
        return pool.submit(fn, *args).result()


def _adopt_packages(packages: list[tuple[str, list[str]]]) -> None:
    """In a child of :func:`in_own_process`: each package (outermost first) that cannot be
    found the usual way becomes a bare package with the parent process's search path."""
    for name, path in packages:
        if name in sys.modules:
            continue
        try:
            found = importlib.util.find_spec(name)
        except ImportError:
            found = None
        if found is None:
            spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
            spec.submodule_search_locations = path
            sys.modules[name] = importlib.util.module_from_spec(spec)
