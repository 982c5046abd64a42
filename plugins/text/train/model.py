"""The character LSTM: embedding -> stacked LSTM (dropout between layers) -> dropout -> linear
head; and the one-step module that is exported to ONNX."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

State = tuple[torch.Tensor, torch.Tensor]


class CharLSTM(nn.Module):
    """Character ids [batch, time] and a state -> logits [batch, time, vocab] and the state."""

    def __init__(
        self,
        vocab_size: int,
        embed: int = 64,
        hidden: int = 512,
        layers: int = 2,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if not 1 <= layers <= 4:
            raise ValueError("layers must be from 1 to 4")
        self.config: dict[str, Any] = {
            "vocab_size": vocab_size,
            "embed": embed,
            "hidden": hidden,
            "layers": layers,
            "dropout": dropout,
        }
        self.embed = nn.Embedding(vocab_size, embed)
        self.lstm = nn.LSTM(
            embed, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab_size)

    def zero_state(self, batch: int, device: torch.device | None = None) -> State:
        shape = (self.config["layers"], batch, self.config["hidden"])
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def forward(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        out, new_state = self.lstm(self.embed(ids), state)
        return self.head(self.drop(out)), new_state


class CharLSTMStep(nn.Module):
    """One character for each row: token [batch], h and c [layers, batch, hidden] -> logits
    [batch, vocab], h_out, c_out.  The cell is written out (PyTorch's gate order i, f, g, o)
    so the graph is plain MatMul / Sigmoid / Tanh that ONNX Runtime runs, and quantises,
    well; the weights keep the CharLSTM's state-dict names, so the two share one checkpoint
    and ``from_onnx`` can rebuild the torch model from the file."""

    def __init__(self, model: CharLSTM) -> None:
        super().__init__()
        self.config = dict(model.config)
        self.embed, self.lstm, self.head = model.embed, model.lstm, model.head

    def forward(
        self, token: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.embed(token)
        hs, cs = [], []
        for layer in range(self.config["layers"]):
            gates = F.linear(
                x,
                getattr(self.lstm, f"weight_ih_l{layer}"),
                getattr(self.lstm, f"bias_ih_l{layer}"),
            ) + F.linear(
                h[layer],
                getattr(self.lstm, f"weight_hh_l{layer}"),
                getattr(self.lstm, f"bias_hh_l{layer}"),
            )
            # Slices, not chunk(): chunk exports as a tensor sequence, slices as plain Slice.
            n = self.config["hidden"]
            i, f, g, o = (gates[:, k * n : (k + 1) * n] for k in range(4))
            c_new = torch.sigmoid(f) * c[layer] + torch.sigmoid(i) * torch.tanh(g)
            x = torch.sigmoid(o) * torch.tanh(c_new)
            hs.append(x)
            cs.append(c_new)
        return self.head(x), torch.stack(hs), torch.stack(cs)
