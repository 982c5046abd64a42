"""What a run leaves to read while it trains: log.csv (training and validation losses) and a
text sample per epoch."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import torch
from gdl_studio_plugins.text.corpus import Vocabulary

from gdl_studio.training.checkpoints import atomic_write_text

from .model import CharLSTM

FIELDS = ("step", "epoch", "train_nll", "val_nll", "lr", "grad_norm", "chars_per_s")


class RunLog:
    """log.csv: a row every ``--log-every`` steps (training) and one per validation."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def write(self, step: int, epoch: float, **values: float) -> None:
        row = {"step": step, "epoch": round(epoch, 4)}
        row.update({k: f"{v:.6g}" for k, v in values.items()})
        new = not self.path.is_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, FIELDS)
            if new:
                w.writeheader()
            w.writerow(row)

    def rows(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after the checkpoint a resumed run starts from."""
        rows = self.rows()
        if not any(int(r["step"]) > step for r in rows):
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, FIELDS)
            w.writeheader()
            w.writerows(r for r in rows if int(r["step"]) <= step)
        os.replace(tmp, self.path)

    def write_sample(self, path: Path, text: str) -> None:
        atomic_write_text(path, text)


@torch.no_grad()
def sample_text(
    model: CharLSTM,
    vocab: Vocabulary,
    seed_text: str,
    n: int,
    temperature: float = 0.8,
    seed: int = 0,
) -> str:
    """``seed_text`` and ``n`` sampled characters.  Draws from its own generator, so a sample
    never shifts the training run's random stream (resumed runs stay exact)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    ids = torch.as_tensor(vocab.encode(seed_text).ids[None, :] if seed_text else [[0]])
    logits, state = model(ids.to(device), model.zero_state(1, device))
    out = []
    for _ in range(n):
        p = torch.softmax(logits[0, -1].float().cpu() / temperature, dim=-1)
        nxt = int(torch.multinomial(p, 1, generator=g))
        out.append(nxt)
        logits, state = model(torch.tensor([[nxt]], device=device), state)
    model.train(was_training)
    return seed_text + vocab.decode(out)
