"""Write a benchmark's output into docs/benchmarks.md between markers, so documented numbers
always come from running the command (never typed in)."""

from __future__ import annotations

import platform
import time
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEach section is written by the command it names; do not edit by hand.\n"


def update_section(name: str, command: str, body: str, doc: Path = DOC) -> None:
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    machine = (
        f"{platform.system()} {platform.machine()}, {_cores()} cores, "
        f"Python {platform.python_version()}"
    )
    block = (
        f"{start}\n## {name}\n\n`{command}` — {time.strftime('%Y-%m-%d')}, {machine}\n\n"
        f"```\n{body.strip()}\n```\n{end}"
    )
    text = doc.read_text(encoding="utf-8") if doc.exists() else HEADER
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def median_p90(times: list[float], digits: int) -> tuple[float, float]:
    """The median and the 90th percentile of ``times``, rounded."""
    import statistics

    p90 = sorted(times)[int(0.9 * (len(times) - 1))]
    return round(statistics.median(times), digits), round(p90, digits)


def report(out: dict, as_json: bool, write_docs: bool, name: str, command: str) -> None:
    """Print a benchmark's result (indented with --json); with --write-docs also put it in
    docs/benchmarks.md under ``name``, with the ``command`` that made it."""
    import json

    print(json.dumps(out, indent=2) if as_json else json.dumps(out))
    if write_docs:
        update_section(name, command, json.dumps(out, indent=2))
