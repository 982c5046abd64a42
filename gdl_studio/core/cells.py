"""What a plugin lets the user do with one cell of an image grid, and the guessing game.

Both travel in ``Result.extra`` (so they are kept in provenance and work again when a saved
result is reopened) and are read here without Qt:

- ``cell_actions``: a list of ``{"label": str, "params": [dict per cell], "run": bool,
  "text_param": str}``. Choosing an action on cell *i* puts ``params[i]`` into the parameter
  panel (seeds locked, as the user picked them) and, with ``run``, starts the job. The GAN
  plugin uses it for "walk from / to this image" and "make this one alone". A text result is
  one cell; its action may name a ``text_param`` that receives the text as it is on the canvas
  (the text plugin's "Continue this text"), so the text is not stored a second time.
- ``quiz``: ``{"prompt": str, "answer": [bool per cell], "marked_means": str,
  "unmarked_means": str}``. The user marks
  the cells they think are the ``True`` ones, then asks for the answer; ``Quiz`` keeps the
  marks and scores them. The GAN plugin uses it for "play the discriminator".
- ``marking``: ``{"prompt": str, "marked_means": str, "unmarked_means": str}``: the same marks
  with no answer to reveal (``Quiz.open``); the user's marks are the point. A cell action with
  ``"marks": {"marked": param, "unmarked": param, "ids": [str per cell]}`` puts the ids of the
  marked cells into one parameter and those of the others into the second (space-separated):
  the VAE plugin's "mark the images with the attribute" for a concept vector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MarkParams:
    """Where an action puts the marks: the ids of the marked cells into ``marked``, the ids
    of the others into ``unmarked``."""

    marked: str
    unmarked: str
    ids: tuple[str, ...]

    def fill(self, marks: set[int]) -> dict[str, str]:
        on = [i for k, i in enumerate(self.ids) if k in marks]
        off = [i for k, i in enumerate(self.ids) if k not in marks]
        return {self.marked: " ".join(on), self.unmarked: " ".join(off)}

    @classmethod
    def parse(cls, raw: Any, cells: int) -> MarkParams | None:
        if not isinstance(raw, dict):
            return None
        marked, unmarked, ids = raw.get("marked"), raw.get("unmarked"), raw.get("ids")
        if not (isinstance(marked, str) and marked and isinstance(unmarked, str) and unmarked):
            return None
        if not isinstance(ids, list) or len(ids) != cells:
            return None
        return cls(marked, unmarked, tuple(str(i) for i in ids))


@dataclass(frozen=True)
class CellAction:
    label: str
    params: tuple[dict[str, Any], ...]
    run: bool = False
    text_param: str | None = None  # receives the result's text (see the module docstring)
    marks: MarkParams | None = None  # receives the marks (see the module docstring)

    def params_for(
        self, index: int, text: str | None = None, marks: set[int] | None = None
    ) -> dict[str, Any] | None:
        if not 0 <= index < len(self.params):
            return None
        params = dict(self.params[index])
        if self.text_param and text is not None:
            params[self.text_param] = text
        if self.marks is not None:
            params.update(self.marks.fill(marks or set()))
        return params


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
        text_param = item.get("text_param")
        text_param = text_param if isinstance(text_param, str) and text_param else None
        marks = MarkParams.parse(item.get("marks"), cells)
        if "marks" in item and marks is None:
            continue  # an action that needs the marks cannot work without them
        run = bool(item.get("run", False))
        out.append(CellAction(label, tuple(params), run, text_param, marks))
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
    open: bool = False  # a marking: no answer to reveal, the marks are the user's choice

    @classmethod
    def from_extra(cls, extra: dict[str, Any], cells: int) -> Quiz | None:
        raw = extra.get("quiz")
        marking = extra.get("marking")
        if not isinstance(raw, dict) and isinstance(marking, dict):
            return cls(
                (False,) * cells,
                prompt=str(marking.get("prompt", cls.prompt)),
                marked_means=str(marking.get("marked_means", cls.marked_means)),
                unmarked_means=str(marking.get("unmarked_means", cls.unmarked_means)),
                open=True,
            )
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
        if not self.open:  # a marking has no answer: it stays open for marks
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
        if self.open:
            return f"{len(self.marks)} of {len(self.answer)} marked {self.marked_means}"
        right, total = self.score()
        targets = sum(self.answer)
        found = sum(1 for i in self.marks if self.answer[i])
        wrong = len(self.marks) - found
        return (
            f"{right}/{total} right: you found {found} of {targets} {self.marked_means} "
            f"and marked {wrong} by mistake"
        )
