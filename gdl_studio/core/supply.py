"""The shipped files against ``assets/SHA256SUMS``, checked when the studio starts.

Each plugin manifest pins its models' sha256, but cards, vocabularies and the evaluation
classifiers are read without such a pin, and a model pinned by a manifest shipped beside it is
only as safe as that manifest.  SHA256SUMS lists every shipped file (``sha256sum`` format, so
``cd assets && sha256sum -c SHA256SUMS`` works too); scripts/update_sha256sums.py rewrites it.

At start-up a file whose bytes differ from its line is refused: the session factory will not
load it, and a plugin whose assets folder holds it is listed as unusable with the reason.  A
listed file that is missing, or a file that is not listed, is only logged: that is a checkout
whose SHA256SUMS was not regenerated (tests/reliability/test_supply.py fails on it), and
refusing a file nobody vouched for would not make it safer than its manifest's own sha256.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from gdl_studio.core.runtime import sha256_cached

SUMS_NAME = "SHA256SUMS"
SKIPPED_NAMES = {SUMS_NAME, "__init__.py"}  # the package's own file is code, not an asset
SKIPPED_DIRS = {"__pycache__"}
log = logging.getLogger(__name__)


@dataclass
class AssetCheck:
    """The outcome of :func:`check_assets`: refused files (absolute path -> message) and notes
    about a SHA256SUMS that is out of date."""

    refused: dict[Path, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def asset_files(root: Path) -> list[str]:
    """Every file SHA256SUMS lists: paths relative to ``root`` with ``/``, sorted."""
    out = []
    for path in Path(root).rglob("*"):
        rel = path.relative_to(root)
        if path.is_file() and path.name not in SKIPPED_NAMES and not SKIPPED_DIRS & set(rel.parts):
            out.append(rel.as_posix())
    return sorted(out)


def compute_sums(root: Path) -> dict[str, str]:
    """The sha256 of every asset file, by relative path."""
    return {rel: sha256_cached(Path(root) / rel) for rel in asset_files(root)}


def format_sums(sums: dict[str, str]) -> str:
    """SHA256SUMS text: ``<sha256>  <path>`` per line, sorted by path."""
    return "".join(f"{sums[rel]}  {rel}\n" for rel in sorted(sums))


def parse_sums(text: str) -> dict[str, str]:
    """Read SHA256SUMS text; ``ValueError`` for a malformed line or a path leaving the folder."""
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        sha, sep, rel = line.partition("  ")
        rel = rel[1:] if rel.startswith("*") else rel  # sha256sum's binary-mode marker
        sha = sha.lower()
        if not sep or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError(f"line {number}: expected '<sha256>  <path>'")
        parts = PurePosixPath(rel).parts
        if not rel or rel.startswith("/") or ".." in parts or "\\" in rel:
            raise ValueError(f"line {number}: {rel!r} is not a path inside assets/")
        out[rel] = sha
    return out


def check_assets(root: Path | None) -> AssetCheck:
    """Compare the files under ``root`` with ``root/SHA256SUMS``."""
    check = AssetCheck()
    if root is None or not Path(root).is_dir():
        return check
    root = Path(root)
    sums_file = root / SUMS_NAME
    try:
        listed = parse_sums(sums_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        check.notes.append(f"assets/{SUMS_NAME} cannot be used ({exc}); shipped files unchecked")
        listed = {}
    present = set(asset_files(root))
    for rel, sha in sorted(listed.items()):
        path = root / rel
        if rel not in present:
            check.notes.append(f"assets/{rel} is listed in {SUMS_NAME} but missing")
            continue
        try:
            actual = sha256_cached(path)
        except OSError as exc:
            actual = f"unreadable ({exc})"
        if actual != sha:
            check.refused[path.resolve()] = (
                f"assets/{rel} differs from assets/{SUMS_NAME} (changed or damaged), so it is "
                "refused; reinstall GDL Studio, or run scripts/update_sha256sums.py if you "
                "changed it on purpose"
            )
    for rel in sorted(present - set(listed)):
        check.notes.append(f"assets/{rel} is not listed in {SUMS_NAME}: run "
                           "scripts/update_sha256sums.py")  # fmt: skip
    # Logged at info level: the window and the CLI show refusals themselves (a warning with no
    # logging configured would print a second, unformatted line from the CLI).
    for message in (*check.notes, *check.refused.values()):
        log.info("%s", message)
    return check
