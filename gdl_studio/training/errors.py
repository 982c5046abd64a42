"""The errors a training command reports as one line instead of a traceback."""

from __future__ import annotations

import sys
from typing import NoReturn


class TrainError(Exception):
    """A problem the user can fix (a bad option, unusable data, a wrong checkpoint): shown as
    one line, no traceback."""


def fail(prog: str, message: str, code: int = 2) -> NoReturn:
    """Print ``prog: error: message`` on stderr (argparse's form) and exit with ``code``."""
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)
