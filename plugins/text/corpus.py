"""Text files, the fixed train/validation split and the character vocabulary: shared by the
app (numpy only) and the training code, so both read and split a file the same way."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np

TRAIN_FRACTION = 0.9  # first 90% train, last 10% validation (nanoGPT's split of tiny Shakespeare)
EVAL_BURN = 256  # characters that only warm up a scoring row's state (see eval_windows)

# Characters a model may lack, and what they are read as when it does (typographic quotes and
# dashes to ASCII ones); accents are stripped after this, and case is folded last.
SUBSTITUTES = {
    "‘": "'",
    "’": "'",
    "‚": "'",
    "‛": "'",
    "“": '"',
    "”": '"',
    "„": '"',
    "«": '"',
    "»": '"',
    "–": "-",
    "—": "--",
    "―": "--",
    "…": "...",
    "\u00a0": " ",
    "\t": " ",
    "\r\n": "\n",
    "\r": "\n",
}


class CorpusError(ValueError):
    """A text file that cannot be used; the message says why and what to do."""


TRAIN_HINT = "pass --encoding (e.g. latin-1) or --decode-errors replace"


def read_text(
    path: Path, encoding: str = "utf-8", errors: str = "strict", hint: str = TRAIN_HINT
) -> str:
    """The whole file as text, with a message a user can act on when it is not text
    (``hint`` says what to do about an undecodable byte)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CorpusError(f"{path}: no such file")
    raw = path.read_bytes()
    if not raw:
        raise CorpusError(f"{path}: the file is empty")
    try:
        text = raw.decode(encoding, errors)
    except LookupError:
        raise CorpusError(f"{path}: unknown encoding {encoding!r}") from None
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise CorpusError(
            f"{path}: not {encoding} text (byte 0x{raw[exc.start]:02X} at offset {exc.start}, "
            f"line {line}); {hint}"
        ) from None
    if text.startswith("\ufeff"):  # a byte-order mark is not part of the text
        text = text[1:]
    if not text.strip():
        raise CorpusError(f"{path}: the file holds only whitespace")
    return text


def split_point(n: int) -> int:
    """Index of the first validation character of an ``n``-character text."""
    return int(n * TRAIN_FRACTION)


@dataclass
class Encoded:
    """A text as vocabulary ids, with what had to be changed to get there."""

    ids: np.ndarray
    text: str  # the text the ids spell (after mapping and dropping)
    mapped: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)  # character -> how many times

    @property
    def changed(self) -> bool:
        return bool(self.mapped or self.dropped)

    def report(self) -> str:
        """One line for a notice: what was mapped and what was dropped."""
        parts = []
        if self.mapped:
            pairs = ", ".join(f"{a!r}→{b!r}" for a, b in sorted(self.mapped.items())[:8])
            parts.append(f"mapped {pairs}" + (" …" if len(self.mapped) > 8 else ""))
        if self.dropped:
            chars = ", ".join(repr(c) for c in sorted(self.dropped)[:8])
            total = sum(self.dropped.values())
            parts.append(f"dropped {total} character(s) outside the vocabulary ({chars})")
        return "; ".join(parts)


class Vocabulary:
    """The characters a model knows, in id order (sorted code points, as training builds it)."""

    def __init__(self, chars: list[str]) -> None:
        if not chars or any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("a vocabulary is a list of distinct single characters")
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.lowercase_only = not any(c.isupper() for c in self.chars)

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, char: str) -> bool:
        return char in self.index

    def encode_exact(self, text: str) -> np.ndarray:
        """Ids of a text made only of known characters (training data)."""
        table = np.full(max(map(ord, self.chars)) + 1, -1, np.int64)
        for i, c in enumerate(self.chars):
            table[ord(c)] = i
        codes = np.frombuffer(text.encode("utf-32-le"), np.uint32).astype(np.int64)
        ids = table[np.minimum(codes, len(table) - 1)]
        ids[codes >= len(table)] = -1
        if (ids < 0).any():
            bad = text[int(np.argmax(ids < 0))]
            raise ValueError(f"character {bad!r} is not in the vocabulary")
        return ids

    def encode(self, text: str) -> Encoded:
        """Ids of any text: unknown characters are mapped to a near one (typographic
        punctuation, accents, case) where the vocabulary has it, else dropped."""
        if all(c in self.index for c in text):
            return Encoded(self.encode_exact(text) if text else np.zeros(0, np.int64), text)
        mapped: dict[str, str] = {}
        for a, b in SUBSTITUTES.items():
            known = all(c in self.index for c in a)
            if a in text and not known and all(c in self.index for c in b):
                text = text.replace(a, b)
                mapped[a] = b
        out: list[str] = []
        dropped: dict[str, int] = {}
        for c in text:
            rep = c if c in self.index else self._near(c)
            if rep is None:
                dropped[c] = dropped.get(c, 0) + 1
                continue
            if rep != c:
                mapped[c] = rep
            out.append(rep)
        kept = "".join(out)
        ids = np.array([self.index[c] for c in kept], np.int64)
        return Encoded(ids, kept, mapped, dropped)

    def _near(self, c: str) -> str | None:
        candidates = [c.lower(), c.upper()]
        base = "".join(x for x in unicodedata.normalize("NFKD", c) if not unicodedata.combining(x))
        candidates += [base, base.lower(), base.upper()]
        for cand in candidates:
            if len(cand) == 1 and cand in self.index:
                return cand
        return None

    def decode(self, ids: np.ndarray | list[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def eval_windows(n: int, streams: int, burn: int) -> list[tuple[int, int, int]]:
    """How a scorer covers an ``n``-id text with ``streams`` parallel rows.

    Every id but the first is predicted from the ids before it.  Row ``s`` scores targets
    ``[a, b)`` and is fed inputs from ``f = max(0, a - 1 - burn)``: the ``burn`` ids before its
    first target only warm up the recurrent state.  With ``burn >= n`` every prediction sees
    its whole history and the result equals one sequential pass.  Returns ``(f, a, b)`` rows.
    """
    targets = n - 1
    streams = max(1, min(streams, targets))
    bounds = np.linspace(1, n, streams + 1).round().astype(int)
    return [(max(0, int(a) - 1 - burn), int(a), int(b)) for a, b in pairwise(bounds)]


def default_streams(n: int) -> int:
    """Rows for scoring ``n`` ids: long rows amortise the warm-up, wide batches the calls."""
    return int(max(1, min(256, n // 2048)))


def window_arrays(
    ids: np.ndarray, windows: list[tuple[int, int, int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs, targets and a 0/1 mask, each [rows, steps], for :func:`eval_windows` rows:
    step ``j`` of row ``(f, a, b)`` feeds ``ids[f + j]`` and scores ``ids[f + j + 1]`` when
    that target lies in ``[a, b)``.  Short rows are padded at the end (mask 0)."""
    steps = max(b - 1 - f for f, _, b in windows)
    x = np.zeros((len(windows), steps), np.int64)
    y = np.zeros((len(windows), steps), np.int64)
    mask = np.zeros((len(windows), steps), np.float32)
    for r, (f, a, b) in enumerate(windows):
        n = b - 1 - f
        x[r, :n] = ids[f : b - 1]
        y[r, :n] = ids[f + 1 : b]
        mask[r, a - 1 - f : n] = 1.0
    return x, y, mask
