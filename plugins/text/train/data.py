"""A text file as training data: vocabulary, the fixed 90/10 split, the parallel streams that
truncated back-propagation through time walks along, and the validation rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gdl_studio_plugins.text.corpus import (
    EVAL_BURN,
    CorpusError,
    Vocabulary,
    default_streams,
    eval_windows,
    read_text,
    split_point,
    window_arrays,
)

from gdl_studio.core.runtime import sha256_file
from gdl_studio.training.errors import TrainError

# What card.json says about the corpora in shared/data/text (by file name); any other file is
# the user's own, of unknown licence.
KNOWN_DATA: dict[str, dict[str, str]] = {
    "tinyshakespeare.txt": {
        "name": "Tiny Shakespeare",
        "source": "Karpathy's char-rnn data (plays of Shakespeare, 1.1 M characters)",
        "licence": "public domain (the text); the selection is from char-rnn (MIT)",
    },
    "nietzsche.txt": {
        "name": "Nietzsche",
        "source": "the Keras example corpus (Beyond Good and Evil, Zimmern's translation, "
        "lower-cased)",
        "licence": "public domain (Project Gutenberg text)",
    },
    "darwin.txt": {
        "name": "Darwin",
        "source": "Project Gutenberg",
        "licence": "public domain (Project Gutenberg text)",
    },
    "bronte.txt": {
        "name": "Brontë",
        "source": "Project Gutenberg",
        "licence": "public domain (Project Gutenberg text)",
    },
    "dubois.txt": {
        "name": "Du Bois",
        "source": "Project Gutenberg",
        "licence": "public domain (Project Gutenberg text)",
    },
}


@dataclass
class TextData:
    """A file read, checked, encoded and split."""

    path: Path
    vocab: Vocabulary
    train: np.ndarray  # ids of the first 90%
    val: np.ndarray  # ids of the last 10%
    info: dict[str, Any]


def load_text(
    path: str | Path,
    encoding: str = "utf-8",
    errors: str = "strict",
    vocab: Vocabulary | None = None,
) -> TextData:
    """The file as ids of ``vocab`` (characters it lacks mapped to near ones or dropped, as
    ``info["changed"]`` says), or of its own characters when ``vocab`` is None."""
    path = Path(path).expanduser().resolve()
    try:
        text = read_text(path, encoding, errors)
    except CorpusError as exc:
        raise TrainError(str(exc)) from None
    changed = ""
    if vocab is None:
        vocab = Vocabulary.from_text(text)
        ids = vocab.encode_exact(text)
    else:
        encoded = vocab.encode(text)
        ids, changed = encoded.ids, encoded.report()
    cut = split_point(len(ids))
    if len(ids) - cut < 2:
        raise TrainError(f"{path}: {len(ids)} characters are too few to keep 10% for validation")
    known = KNOWN_DATA.get(path.name, {})
    info = {
        "name": known.get("name", path.stem),
        "file": path.name,
        "path": str(path),
        "sha256": sha256_file(path),
        "chars": len(ids),
        "encoding": encoding,
        "decode_errors": errors,
        "replaced": text.count("\ufffd") if errors == "replace" else 0,
        "source": known.get("source", "the user's own text"),
        "licence": known.get("licence", "unknown (the user's own text)"),
        "split": {"train": [0, cut], "val": [cut, len(ids)]},
        **({"changed": changed} if changed else {}),
    }
    return TextData(path, vocab, ids[:cut], ids[cut:], info)


class Streams:
    """The training text cut into ``batch`` equally long streams read side by side, ``bptt``
    characters per step, the LSTM state carried from one window to the next (Karpathy's
    char-rnn, PyTorch's word_language_model).  Each epoch starts the streams at a different
    place (an offset drawn from the seed and the epoch) so windows do not repeat; the state is
    reset there.  Under DDP each rank reads its own block of streams."""

    def __init__(
        self, ids: np.ndarray, batch: int, bptt: int, seed: int, rank: int = 0, world: int = 1
    ) -> None:
        if batch % world:
            raise TrainError(f"--batch {batch} is not divisible by {world} processes")
        self.ids = torch.from_numpy(np.ascontiguousarray(ids))
        self.n, self.batch, self.bptt, self.seed = len(ids), batch, bptt, seed
        self.length = self.n // batch
        self.steps_per_epoch = (self.length - 1) // bptt
        if self.steps_per_epoch < 1:
            need = batch * (bptt + 1)
            raise TrainError(
                f"the training part (90%) has {self.n} characters, fewer than one step of "
                f"{batch} streams x {bptt + 1} characters ({need}): use a longer file or a "
                "smaller --batch or --bptt"
            )
        local = batch // world
        self.rows = torch.arange(rank * local, (rank + 1) * local)

    def offset(self, epoch: int) -> int:
        if epoch == 0:
            return 0
        return int(np.random.default_rng([self.seed, epoch]).integers(self.n))

    def window(self, epoch: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets [local batch, bptt] of step ``k`` of ``epoch``."""
        start = self.offset(epoch) + self.rows * self.length + k * self.bptt
        index = (start[:, None] + torch.arange(self.bptt + 1)) % self.n
        chunk = self.ids[index]
        return chunk[:, :-1], chunk[:, 1:]


def validation_rows(
    ids: np.ndarray, rank: int = 0, world: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """This rank's share of the scoring rows of the validation split: exactly the rows
    ``gdl-studio eval text`` uses, so the two numbers agree."""
    windows = eval_windows(len(ids), default_streams(len(ids)), EVAL_BURN)
    x, y, mask = window_arrays(ids, windows)
    pick = slice(rank, None, world)
    return torch.from_numpy(x[pick]), torch.from_numpy(y[pick]), torch.from_numpy(mask[pick])
