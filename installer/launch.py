"""Entry script of the frozen app: the same ``main`` as the ``gdl-studio`` command, so one
executable opens the window (no arguments) or runs the CLI (``plugins``, ``run``, ...)."""

import sys

from gdl_studio.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
