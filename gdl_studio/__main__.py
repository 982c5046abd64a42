"""`python -m gdl_studio` and the `gdl-studio` command: the window, or a CLI command."""

from __future__ import annotations

import sys
from collections.abc import Sequence

CLI_COMMANDS = {"plugins", "run", "eval", "bench"}
OPTIONS_WITH_VALUE = {"--plugin-dir"}


def first_command(args: Sequence[str]) -> str | None:
    """The first word that is not an option (or an option's value)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in OPTIONS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if first_command(args) in CLI_COMMANDS or {"-h", "--help", "--version"} & set(args):
        from gdl_studio.cli import main as cli_main

        return cli_main(args)
    # No command (or `gui`): open the window.  Imported here so that the CLI never loads Qt.
    from gdl_studio.app import main as app_main

    return app_main([a for a in args if a != "gui"])


if __name__ == "__main__":
    sys.exit(main())
