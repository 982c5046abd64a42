"""What a plugin lets the user do with one cell of an image grid, and the guessing game.

Both travel in ``Result.extra`` (so they are kept in provenance and work again when a saved
result is reopened) and are read here without Qt:

- ``cell_actions``: a list of ``{"label": str, "params": [dict per cell], "run": bool}``.
  Choosing an action on cell *i* puts ``params[i]`` into the parameter panel (seeds locked, as
  the user picked them) and, with ``run``, starts the job. The GAN plugin uses it for "walk
  from / to this image" and "make this one alone".
- ``quiz``: ``{"prompt": str, "answer": [bool per cell], "marked_means": str,
  "unmarked_means": str}``. The user marks
  the cells they think are the ``True`` ones, then asks for the answer; ``Quiz`` keeps the
  marks and scores them. The GAN plugin uses it for "play the discriminator".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CellAction:
    label: str
    params: tuple[dict[str, Any], ...]
    run: bool = False

    def params_for(self, index: int) -> dict[str, Any] | None:
        return dict(self.params[index]) if 0 <= index < len(self.params) else None


def cell_actions(extra: dict[str, Any], cells: int) -> list[CellAction]:
    """The well-formed actions in ``extra`` that cover every one of ``cells`` cells.

    A malformed entry (from a hand-edited or foreign file) is skipped, never an error: the
    result still shows, only without that action.
    """
    out: list[CellAction] = []
    raw = extra.get("cell_actions")
    if not isinstance(raw, list):
        return out
    for item in raw:
        if not isinstance(item, dict):
            continue
        label, params = item.get("label"), item.get("params")
        if not isinstance(label, str) or not label or not isinstance(params, list):
            continue
        if len(params) != cells or not all(isinstance(p, dict) for p in params):
            continue
        out.append(CellAction(label, tuple(params), bool(item.get("run", False))))
    return out


@dataclass
class Quiz:
    """Marks on cells, checked against a hidden answer (``True``: the cell is a target)."""

    answer: tuple[bool, ...]
    prompt: str = "Mark the cells, then check"
    marked_means: str = "marked"  # what a True cell is ("generated")
    unmarked_means: str = "unmarked"  # what a False cell is ("real")
    marks: set[int] = field(default_factory=set)
    revealed: bool = False

    @classmethod
    def from_extra(cls, extra: dict[str, Any], cells: int) -> Quiz | None:
        raw = extra.get("quiz")
        if not isinstance(raw, dict):
            return None
        answer = raw.get("answer")
        if not isinstance(answer, list) or len(answer) != cells:
            return None
        if not all(isinstance(a, bool) for a in answer):
            return None
        return cls(
            tuple(answer),
            prompt=str(raw.get("prompt", cls.prompt)),
            marked_means=str(raw.get("marked_means", cls.marked_means)),
            unmarked_means=str(raw.get("unmarked_means", cls.unmarked_means)),
        )

    def toggle(self, index: int) -> bool:
        """Mark or unmark a cell; refused (False) once the answer is shown or out of range."""
        if self.revealed or not 0 <= index < len(self.answer):
            return False
        self.marks ^= {index}
        return True

    def reveal(self) -> str:
        self.revealed = True
        return self.summary()

    def reset(self) -> None:
        self.marks.clear()
        self.revealed = False

    def correct(self, index: int) -> bool:
        """Whether the user's call on a cell (marked or not) matches the answer."""
        return (index in self.marks) == self.answer[index]

    def score(self) -> tuple[int, int]:
        """(cells called right, cells)."""
        return sum(self.correct(i) for i in range(len(self.answer))), len(self.answer)

    def summary(self) -> str:
        right, total = self.score()
        targets = sum(self.answer)
        found = sum(1 for i in self.marks if self.answer[i])
        wrong = len(self.marks) - found
        return (
            f"{right}/{total} right: you found {found} of {targets} {self.marked_means} "
            f"and marked {wrong} by mistake"
        )
