"""The command line: the same plugins and files as the window, no Qt.

gdl-studio plugins [--json]
gdl-studio run PLUGIN [--model M] [--seed N] [--set NAME=VALUE ...] [--input FILE] --out PATH
gdl-studio eval PLUGIN [--model M] [--data PATH] --json
gdl-studio bench PLUGIN [--model M] --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gdl_studio import __version__
from gdl_studio.core.errors import StudioError
from gdl_studio.core.host import (
    JobError,
    Studio,
    call_command,
    prepare_job,
    run_job,
)
from gdl_studio.core.jobs import Cancelled, TaskState
from gdl_studio.core.results import ALSO_ACCEPTED, EXTENSIONS, save_result
from gdl_studio.core.runtime import explain_fallback

PROG = "gdl-studio"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="GDL Studio: generative models, locally.")
    p.add_argument("--version", action="version", version=f"GDL Studio {__version__}")
    _global_options(p)
    # The same options are accepted after the command too; SUPPRESS keeps a sub-command from
    # resetting what was given before it.
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common])

    add("gui", "open the studio window (the default)")
    pl = add("plugins", "list plugins, their models and state")
    pl.add_argument("--json", action="store_true", help="print JSON")
    run = add("run", "run a plugin and write its result")
    run.add_argument("plugin")
    run.add_argument("--model", help="model id (default: the plugin's default model)")
    run.add_argument("--seed", type=int, help="seed (default: a random one, recorded)")
    run.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="set a parameter"
    )
    run.add_argument("--input", action="append", type=Path, default=[], metavar="FILE",
                     help="an image or MIDI file for the plugin's matching input")  # fmt: skip
    run.add_argument("--out", required=True, type=Path, help="where to write the result")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    ev = add("eval", "measure a model's quality (prints JSON)")
    ev.add_argument("plugin")
    ev.add_argument("--model")
    ev.add_argument("--data", type=Path, help="evaluation data (plugin specific)")
    ev.add_argument("--json", action="store_true", help="print JSON (the only format)")
    be = add("bench", "time a model (prints JSON)")
    be.add_argument("plugin")
    be.add_argument("--model")
    be.add_argument("--json", action="store_true", help="print JSON (the only format)")
    return p


def _global_options(p: argparse.ArgumentParser, suppress: bool = False) -> None:
    extra: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    p.add_argument("--no-plugins", action="store_true", help="safe mode: load no plugins", **extra)
    p.add_argument(
        "--plugin-dir", action="append", type=Path, metavar="DIR",
        help="also load the plugin folders inside DIR (for plugin authors)",
        **(extra or {"default": []}),
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in (None, "gui"):
        # `gdl-studio` alone opens the window through __main__; this module stays Qt-free.
        return fail("no command: run `gdl-studio` without arguments to open the window", 2)
    studio = Studio.create(safe_mode=args.no_plugins, extra_folders=args.plugin_dir)
    for reason in studio.assets.refused.values():  # shipped files that failed SHA256SUMS
        print(f"{PROG}: warning: {reason}", file=sys.stderr)
    try:
        if args.command == "plugins":
            return cmd_plugins(studio, args.json)
        if args.command == "run":
            return cmd_run(studio, args)
        extra = {"data": args.data} if args.command == "eval" and args.data else {}
        out = call_command(studio, args.plugin, args.command, args.model, **extra)
        print(json.dumps(out, indent=2, sort_keys=True, default=str))
        return 0
    except (StudioError, ValueError, OSError) as exc:
        return fail(str(exc))
    except Cancelled:
        return fail("cancelled")


def fail(message: str, code: int = 1) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def plugin_rows(studio: Studio) -> list[dict[str, Any]]:
    """What `plugins --json` prints (and the Plugins dialog shows)."""
    choice = studio.factory.choice()
    planned = explain_fallback(choice.requested, choice.requested[:1], choice.reason)
    rows = []
    for rec in studio.registry:
        m = rec.manifest
        rows.append(
            {
                "id": rec.id,
                "name": rec.name,
                "kind": m.kind if m else None,
                "version": m.version if m else None,
                "source": rec.source,
                "path": str(rec.folder),
                "models": [
                    {"id": x.id, "name": x.name, "sha256": x.sha256, "default": x.default}
                    for x in (m.models if m else ())
                ],
                "state": rec.state,
                "provider": planned if rec.ok and m and m.models else None,
            }
        )
    return rows


def cmd_plugins(studio: Studio, as_json: bool) -> int:
    rows = plugin_rows(studio)
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no plugins found")
    for r in rows:
        models = ", ".join(m["id"] for m in r["models"]) or "-"
        print(f"{r['id']:<12} {r['kind'] or '?':<6} {r['version'] or '?':<8} {r['state']:<10} "
              f"models: {models}")  # fmt: skip
    return 0


def parse_sets(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise JobError(f"--set {item!r}: expected NAME=VALUE")
        out[name.strip()] = value
    return out


def cmd_run(studio: Studio, args: argparse.Namespace) -> int:
    params: dict[str, Any] = parse_sets(args.set)
    record = studio.registry.get(args.plugin) if args.plugin in _ids(studio) else None
    if record is None or record.manifest is None:
        raise JobError(f"no usable plugin {args.plugin!r} (plugins: {', '.join(_ids(studio))})")
    kind = record.manifest.kind
    allowed = (EXTENSIONS[kind], *ALSO_ACCEPTED.get(kind, ()))
    if args.out.suffix.lower() not in allowed:
        raise JobError(f"--out {args.out}: {args.plugin} writes {' or '.join(allowed)} files")
    if args.seed is not None:
        seeds = [p.name for p in record.manifest.params if p.type == "seed"]
        if not seeds:
            raise JobError(f"plugin {args.plugin!r} has no seed")
        params[seeds[0]] = args.seed
    job = prepare_job(studio, args.plugin, model_id=args.model, params=params, inputs=args.input)
    show = not args.quiet and sys.stderr.isatty()
    state = TaskState(
        on_progress=(lambda f, m: print(f"\r{f:4.0%} {m:<40}", end="", file=sys.stderr))
        if show else None,
        on_notice=lambda m: print(f"\n{PROG}: {m}", file=sys.stderr),
    )  # fmt: skip
    outcome = run_job(job, state)
    if show:
        print(file=sys.stderr)
    try:
        written = save_result(outcome.result, outcome.provenance, args.out)
    except OSError as exc:  # e.g. a full disk: say which file, and that nothing was lost
        raise JobError(
            f"could not write {args.out}: {exc.strerror or exc}; any previous file is unchanged"
        ) from None
    if not args.quiet:
        print(f"wrote {', '.join(str(p) for p in written)} "
              f"(seed {outcome.provenance.seed}, {outcome.provenance.provider})")  # fmt: skip
    return 0


def _ids(studio: Studio) -> list[str]:
    return [r.id for r in studio.registry]


if __name__ == "__main__":
    sys.exit(main())
