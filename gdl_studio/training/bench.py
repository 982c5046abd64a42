"""Timing helpers for ``gdl-studio bench`` commands.

Imports no torch: a plugin's ``bench`` runs inside the studio's process and says itself when
the ``[train]`` extra is missing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


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
