"""Rewrite assets/SHA256SUMS from the files under assets/ (run it after adding or changing a
shipped model, card or other asset; the studio refuses a shipped file whose bytes differ).

    .venv/bin/python scripts/update_sha256sums.py           # rewrite the file
    .venv/bin/python scripts/update_sha256sums.py --check   # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runs from a checkout without an install

from gdl_studio.core.atomic import atomic_write_text  # noqa: E402
from gdl_studio.core.supply import SUMS_NAME, compute_sums, format_sums  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--assets", type=Path, default=ROOT / "assets", help="the assets folder")
    p.add_argument("--check", action="store_true", help="only compare; exit 1 when different")
    args = p.parse_args(argv)
    sums_file = args.assets / SUMS_NAME
    text = format_sums(compute_sums(args.assets))
    old = sums_file.read_text(encoding="utf-8") if sums_file.is_file() else ""
    if args.check:
        if old != text:
            print(f"{sums_file} is out of date: run scripts/update_sha256sums.py")
            return 1
        print(f"{sums_file}: {len(text.splitlines())} files, up to date")
        return 0
    if old != text:
        atomic_write_text(sums_file, text)
    print(f"{sums_file}: {len(text.splitlines())} files" + ("" if old != text else ", unchanged"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
