"""Fill a shipped model's card from the project's own commands, then render it as Markdown.

    .venv/bin/python scripts/model_card.py PLUGIN MODEL [--bench] [--no-eval] [--data PATH]

Runs ``gdl-studio eval PLUGIN --model MODEL --json`` (and ``bench`` with --bench) exactly as a
user would, stores the printed JSON under ``metrics`` / ``speed`` in the model's card.json
together with the command and the date, and writes ``card.md`` beside it: data and licence,
training command, metrics, speed, sha256. Numbers in cards are therefore never typed in.
The plugin's README gets the same metrics table between ``<!-- card:MODEL -->`` and
``<!-- /card:MODEL -->`` markers, where it has them.
A card with no plugin model (e.g. an evaluation classifier) is rendered with --no-eval by
giving its card.json path as MODEL.  A model of several graphs (e.g. the VAE's encoder and
decoder) lists them under ``files`` ({file name: sha256}) in its card; each is checked.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def gdl_studio(*args: str) -> dict[str, Any]:
    exe = shutil.which("gdl-studio", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "gdl_studio"]
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"gdl-studio {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def card_path(plugin: str, model: str) -> Path:
    given = Path(model)
    if given.suffix == ".json" and given.is_file():
        return given
    from gdl_studio.core.host import Studio

    studio = Studio.create(include_entry_points=False)
    rec = studio.registry.get(plugin)
    spec = next((m for m in rec.manifest.models if m.id == model), None) if rec.manifest else None
    if spec is None or not spec.card:
        raise SystemExit(f"{plugin}: no model {model!r} with a card")
    return rec.asset_path(spec.card)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def table(values: dict[str, Any]) -> list[str]:
    rows = ["| key | value |", "|---|---|"]
    rows += [f"| `{k}` | {fmt(v)} |" for k, v in sorted(values.items())]
    return rows


def model_files(card: dict[str, Any], folder: Path) -> dict[Path, str | None]:
    """The card's model files with the sha256 the card gives each: ``files`` for a model of
    several graphs, else the one ``model.onnx`` (None: a card that names no hash)."""
    files = card.get("files")
    if isinstance(files, dict) and files:
        return {folder / name: str(sha) for name, sha in files.items()}
    return {folder / "model.onnx": card.get("sha256")}


def render(card: dict[str, Any], model_file: Path | list[Path] | None) -> str:
    data = card.get("data", {})
    training = card.get("training", {})
    lines = [f"# Model card: {card.get('model', '?')}", ""]
    if card.get("kind"):
        lines += [f"Kind: {card['kind']}", ""]
    arch = card.get("architecture")
    if arch:
        lines += ["## Architecture", "", *table(arch), ""]
    lines += [
        "## Data",
        "",
        f"- Dataset: {data.get('name', '?')}",
        f"- Source: {data.get('source', '?')}",
        f"- Licence: {data.get('licence', '?')}",
        "",
        "## Training",
        "",
        "```",
        str(training.get("command", "?")),
        "```",
        "",
    ]
    facts = {k: v for k, v in training.items() if k != "command"}
    if facts:
        lines += [*table(facts), ""]
    for key, title in (("metrics", "Metrics"), ("speed", "Speed")):
        block = card.get(key)
        if block:
            lines += [f"## {title}", "", f"From `{card.get(key + '_command', '?')}`"
                      f" ({card.get(key + '_date', '?')}):", "", *table(block), ""]  # fmt: skip
    if "test_accuracy" in card:
        lines += [f"Test accuracy: {card['test_accuracy']:.4f}", ""]
    shown = [model_file] if isinstance(model_file, Path) else list(model_file or [])
    lines += ["## Files" if len(shown) > 1 else "## File", ""]
    hashes = card.get("files") or {}
    for path in shown:
        sha = f", sha256 `{hashes[path.name]}`" if path.name in hashes else ""
        lines.append(f"- `{path.name}`: {path.stat().st_size / 1e6:.2f} MB{sha}")
    lines += [f"- sha256: `{card.get('sha256', '?')}`", ""]
    return "\n".join(lines)


def update_readme(readme: Path, model: str, card: dict[str, Any]) -> bool:
    """Replace the text between the README's markers for ``model`` with its card's numbers."""
    start, end = f"<!-- card:{model} -->", f"<!-- /card:{model} -->"
    text = readme.read_text()
    if start not in text or end not in text:
        return False
    lines = [start, ""]
    for key, title in (("metrics", "Quality"), ("speed", "Speed")):
        if card.get(key):
            lines += [f"{title}, from `{card[key + '_command']}` ({card[key + '_date']}):", "",
                      *table(card[key]), ""]  # fmt: skip
    lines.append(end)
    head, rest = text.split(start, 1)
    readme.write_text(head + "\n".join(lines) + rest.split(end, 1)[1])
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("plugin")
    ap.add_argument("model", help="model id (or a card.json path with --no-eval)")
    ap.add_argument("--bench", action="store_true", help="also run `gdl-studio bench`")
    ap.add_argument("--no-eval", action="store_true", help="only render card.md")
    ap.add_argument(
        "--data", help="evaluation data for `eval --data` (e.g. the CIFAR-10 tarball), if needed"
    )
    args = ap.parse_args()
    path = card_path(args.plugin, args.model)
    card = json.loads(path.read_text())
    present = []
    for model_file, want in model_files(card, path.parent).items():
        if model_file.is_file():
            sha = hashlib.sha256(model_file.read_bytes()).hexdigest()
            if want != sha:
                raise SystemExit(
                    f"{path}: sha256 differs from {model_file.name}; re-export the card"
                )
            present.append(model_file)
    today = dt.date.today().isoformat()
    runs = [] if args.no_eval else ["eval"]
    runs += ["bench"] if args.bench else []
    for command in runs:
        argv = [command, args.plugin, "--model", args.model, "--json"]
        if command == "eval" and args.data:
            argv[-1:-1] = ["--data", args.data]
        out = gdl_studio(*argv)
        key = "metrics" if command == "eval" else "speed"
        card[key] = out
        card[key + "_command"] = "gdl-studio " + " ".join(argv)
        card[key + "_date"] = today
    path.write_text(json.dumps(card, indent=2) + "\n")
    md = path.with_name("card.md")
    md.write_text(render(card, present))
    print(f"wrote {path} and {md}")
    readme = ROOT / "plugins" / args.plugin / "README.md"
    if readme.is_file() and update_readme(readme, str(card.get("model", args.model)), card):
        print(f"updated {readme}")
    # The card changed, so its line in assets/SHA256SUMS did too: without this the studio would
    # refuse the plugin at the next start (gdl_studio/core/supply.py).
    from gdl_studio.core.atomic import atomic_write_text
    from gdl_studio.core.supply import SUMS_NAME, compute_sums, format_sums

    assets = ROOT / "assets"
    atomic_write_text(assets / SUMS_NAME, format_sums(compute_sums(assets)))
    print(f"updated {assets / SUMS_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
