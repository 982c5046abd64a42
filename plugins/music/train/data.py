"""Training data as token sequences: the JSB chorales of ``Jsb16thSeparated.npz`` (its
train/valid/test split) and folders of solo-line MIDI files (the cello suites), with random
transposition and crops, batched by length.

Every sequence starts with BOS; a crop starts on a cycle boundary of the tokenizer (a grid
step, a note), so its phases are those of position 0 on, and with rotary (relative) positions
the offset in the piece does not matter otherwise: a crop is scored as it stands.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import mido
import numpy as np
import torch
from gdl_studio_plugins.music.jsb import read_chorales
from gdl_studio_plugins.music.tokenizers import (
    BOS,
    ChoraleTokenizer,
    GeneralTokenizer,
    SoloTokenizer,
    TokenError,
    Tokenizer,
    beat_notes,
)

from gdl_studio.training.errors import TrainError

PAD = -100  # the target of padding: cross_entropy's ignore_index

CHORALES = {
    "name": "JSB chorales (Jsb16thSeparated)",
    "source": "czhuang/JSB-Chorales-dataset (Boulanger-Lewandowski split, 16th-note grid)",
    "licence": "not stated by the source; the chorales are Bach's (public domain)",
}
CELLO = {
    "name": "Bach cello suites (36 movements)",
    "source": "jsbach.net MIDI files via RyanKim17920/bach-MIDI-Generator-with-Transformers",
    "licence": "redistributed with the site owner's permission per that repository; no licence",
}


@dataclass
class Pieces:
    """Tokenised pieces of one split: pitch-bearing material kept apart from the token ids so
    that transposition is a shift of the pitch tokens."""

    tokenizer: Tokenizer
    seqs: list[np.ndarray]  # ids after BOS
    names: list[str] = field(default_factory=list)

    def tokens(self) -> int:
        return int(sum(len(s) for s in self.seqs))


@dataclass
class Dataset:
    tokenizer: Tokenizer
    train: Pieces
    valid: Pieces
    info: dict[str, Any]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_chorales(path: Path) -> Dataset:
    """Jsb16thSeparated (.npz or its .json edition): the train and valid splits."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise TrainError(f"{path}: no such file (Jsb16thSeparated.npz)")
    try:
        splits = read_npz(path) if path.suffix.lower() == ".npz" else read_chorales(path)
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    tok = ChoraleTokenizer()
    parts = {}
    for k, grids in splits.items():
        seqs = [np.asarray(tok.encode_grid(g), np.int64) for g in grids]
        parts[k] = Pieces(tok, seqs, [f"{k}/{i}" for i in range(len(seqs))])
    info = {
        **CHORALES,
        "file": path.name,
        "path": str(path),
        "sha256": sha256_of(path),
        "pieces": {k: len(v.seqs) for k, v in parts.items()},
        "tokens": {k: v.tokens() for k, v in parts.items()},
    }
    return Dataset(tok, parts["train"], parts["valid"], info)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: the npz's splits are pickled object arrays,
    and a pickle that names any other class (one that would run code) is refused."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}, not only numpy arrays")


def read_npz(path: Path, splits: tuple[str, ...] = ("train", "valid")) -> dict[str, list]:
    """Jsb16thSeparated.npz's splits as float [steps, 4] grids (NaN: silent)."""
    out: dict[str, list] = {}
    try:
        with zipfile.ZipFile(path) as z:
            for split in splits:
                with z.open(f"{split}.npy") as f:
                    version = np.lib.format.read_magic(f)
                    header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    _, _, dtype = header(f)
                    if not dtype.hasobject:
                        raise ValueError(f"the {split} split is not a list of pieces")
                    pieces = _ArraysOnly(f, encoding="latin1").load()
                grids = [np.asarray(g, np.float64) for g in pieces]
                if not all(g.ndim == 2 and g.shape[1] == 4 for g in grids):
                    raise ValueError(f"the {split} split is not a list of [steps, 4] arrays")
                out[split] = grids
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, TypeError, ValueError,
            pickle.UnpicklingError) as exc:  # fmt: skip
        raise ValueError(f"{path.name}: not a Jsb16thSeparated .npz ({exc})") from None
    return out


def load_solo(folder: Path, valid_every: int = 6) -> Dataset:
    """Every .mid under ``folder`` as one solo line; one file in ``valid_every`` (in name
    order) is held out for validation, the k-th of the k-th group: for the cello suites
    (six suites of six movements) the prelude of suite 1, the allemande of suite 2, ... the
    gigue of suite 6, one movement of each kind."""
    folder = Path(folder).expanduser().resolve()
    files = sorted(folder.rglob("*.mid")) if folder.is_dir() else []
    if not files:
        raise TrainError(f"{folder}: no .mid files")
    tok = SoloTokenizer()
    train, valid = Pieces(tok, []), Pieces(tok, [])
    digest = hashlib.sha256()
    for i, f in enumerate(files):
        digest.update(f.read_bytes())
        try:
            ids = tok.encode_notes(beat_notes(mido.MidiFile(f, clip=True)))
        except (OSError, ValueError, EOFError, TokenError) as exc:
            raise TrainError(f"{f}: {exc}") from None
        part = valid if i % valid_every == (i // valid_every) % valid_every else train
        part.seqs.append(np.asarray(ids, np.int64))
        part.names.append(f.name)
    return Dataset(tok, train, valid, folder_info(CELLO, folder, digest, train, valid))


def folder_info(
    about: dict[str, str], folder: Path, digest: Any, train: Pieces, valid: Pieces
) -> dict[str, Any]:
    """card.json's ``data`` for a folder of MIDI files: what it is, where, its hash, the
    split (the held-out files by name, for ``eval``)."""
    return {
        **about,
        "file": folder.name,
        "path": str(folder),
        "sha256": digest.hexdigest(),
        "pieces": {"train": len(train.seqs), "valid": len(valid.seqs)},
        "tokens": {"train": train.tokens(), "valid": valid.tokens()},
        "valid_files": valid.names,
    }


def load_general(folder: Path, valid_every: int = 10) -> Dataset:
    """Every .mid under ``folder`` (recursively), all instruments but the drums merged, in
    the general-MIDI event scheme; every ``valid_every``-th file in path order is held out
    for validation.  Files that cannot be read are skipped and counted."""
    folder = Path(folder).expanduser().resolve()
    files = sorted([*folder.rglob("*.mid"), *folder.rglob("*.midi")]) if folder.is_dir() else []
    if not files:
        raise TrainError(f"{folder}: no .mid files")
    tok = GeneralTokenizer()
    train, valid = Pieces(tok, []), Pieces(tok, [])
    digest = hashlib.sha256()
    skipped: list[str] = []
    for i, f in enumerate(files):
        name = str(f.relative_to(folder))
        digest.update(name.encode() + f.read_bytes())
        try:
            ids = tok.encode_notes(beat_notes(mido.MidiFile(f, clip=True)))
        except (OSError, ValueError, EOFError, KeyError, TokenError):
            skipped.append(name)
            continue
        part = valid if i % valid_every == valid_every - 1 else train
        part.seqs.append(np.asarray(ids, np.int64))
        part.names.append(name)
    if not train.seqs or not valid.seqs:
        raise TrainError(f"{folder}: too few readable MIDI files for a train and a valid split")
    about = {"name": folder.name, "source": str(folder), "licence": "see the data's own notes"}
    info = folder_info(about, folder, digest, train, valid)
    return Dataset(tok, train, valid, {**info, "skipped_files": skipped})


SCHEME_TOKENIZERS: dict[str, type[Tokenizer]] = {
    "chorale": ChoraleTokenizer,
    "solo": SoloTokenizer,
    "general": GeneralTokenizer,
}


def load(kind: str, path: Path) -> Dataset:
    if kind == "chorale":
        return load_chorales(path)
    if kind == "solo":
        return load_solo(path)
    if kind == "general":
        return load_general(path)
    raise TrainError(f"unknown --scheme {kind!r} (chorale, solo, general)")


def transpose(tok: Tokenizer, ids: np.ndarray, shift: int) -> np.ndarray:
    """``ids`` with every pitch token moved by ``shift`` semitones (the caller keeps it in
    range: :func:`shift_range`)."""
    out = ids.copy()
    first, last = tok.pitch_id(tok.low), tok.pitch_id(tok.high)
    pitched = (out >= first) & (out <= last)
    out[pitched] += shift
    return out


def shift_range(tok: Tokenizer, ids: np.ndarray, most: int) -> tuple[int, int]:
    """The transpositions within +-``most`` that keep every pitch inside the tokenizer."""
    first, last = tok.pitch_id(tok.low), tok.pitch_id(tok.high)
    pitched = ids[(ids >= first) & (ids <= last)]
    if not len(pitched):
        return 0, 0
    return max(-most, first - int(pitched.min())), min(most, last - int(pitched.max()))


class Batches:
    """An epoch's batches: pieces shuffled by (seed, epoch), each transposed at random by up
    to ``transpose`` semitones and cut to at most ``max_len`` tokens at a random cycle
    boundary, grouped with pieces of similar length.  Everything follows from (seed, epoch,
    index), so a resumed run sees exactly the batches it would have; under torchrun each
    rank takes its share of every batch."""

    def __init__(
        self,
        pieces: Pieces,
        batch: int,
        max_len: int,
        transpose: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if batch % world:
            raise TrainError(f"--batch {batch} must divide by the {world} processes")
        self.pieces, self.batch, self.max_len = pieces, batch, max_len
        self.transpose, self.seed, self.rank, self.world = transpose, seed, rank, world
        self.steps_per_epoch = len(pieces.seqs) // batch
        if self.steps_per_epoch < 1:
            raise TrainError(f"{len(pieces.seqs)} pieces are fewer than --batch {batch}")

    def epoch_order(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch, 7])
        order = rng.permutation(len(self.pieces.seqs))
        # Sort within groups of 8 batches by length: less padding, still shuffled.
        groups = []
        span = 8 * self.batch
        for g in range(0, len(order), span):
            chunk = sorted(order[g : g + span], key=lambda i: len(self.pieces.seqs[i]))
            groups += [chunk[i : i + self.batch] for i in range(0, len(chunk), self.batch)]
        groups = [b for b in groups if len(b) == self.batch]
        return [groups[i] for i in rng.permutation(len(groups))][: self.steps_per_epoch]

    def get(self, epoch: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets [rows, time] (targets PAD past each row's end) of batch ``k``
        of ``epoch`` for this rank."""
        idx = self.epoch_order(epoch)[k]
        per = self.batch // self.world
        rows = []
        for j, i in enumerate(idx):
            rng = np.random.default_rng([self.seed, epoch, k, j])
            if not self.rank * per <= j < (self.rank + 1) * per:
                continue
            rows.append(self.row(self.pieces.seqs[i], rng))
        return collate(rows)

    def row(self, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        tok = self.pieces.tokenizer
        lo, hi = shift_range(tok, ids, self.transpose)
        seq = np.concatenate([[BOS], transpose(tok, ids, int(rng.integers(lo, hi + 1)))])
        if len(seq) > self.max_len + 1:
            cycles = (len(seq) - self.max_len - 1) // tok.period
            start = int(rng.integers(0, cycles + 1)) * tok.period
            seq = seq[start : start + self.max_len + 1]
        return seq


def collate(rows: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences -> inputs and targets [rows, longest - 1] (targets PAD past each end)."""
    width = max(len(s) for s in rows) - 1
    x = torch.zeros(len(rows), width, dtype=torch.long)
    y = torch.full((len(rows), width), PAD, dtype=torch.long)
    for i, s in enumerate(rows):
        t = torch.from_numpy(s.astype(np.int64))
        x[i, : len(s) - 1] = t[:-1]
        y[i, : len(s) - 1] = t[1:]
    return x, y


def validation_batches(
    pieces: Pieces, rank: int, world: int, tokens: int = 8192
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's share of the validation pieces, whole (BOS first), in batches of about
    ``tokens`` tokens: every token after BOS is scored once, given all before it."""
    mine = sorted(range(rank, len(pieces.seqs), world), key=lambda i: len(pieces.seqs[i]))
    out, cur = [], []
    for i in mine:
        cur.append(i)
        if len(cur) * (len(pieces.seqs[cur[-1]]) + 1) >= tokens:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return [collate([np.concatenate([[BOS], pieces.seqs[i]]) for i in b]) for b in out]
