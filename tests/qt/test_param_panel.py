"""The parameter panel's editors (offscreen)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox

from gdl_studio.core.params import ParamSpec
from gdl_studio.qt.param_panel import SEARCHABLE_CHOICES, ParamPanel

NAMES = tuple(f"{animal} {i}" for i in range(60) for animal in ("tabby", "goldfish"))


def test_a_long_choice_is_searched_by_typing_and_stays_a_choice(qtbot) -> None:
    panel = ParamPanel((
        ParamSpec(name="short", type="choice", choices=("a", "b"), default="a"),
        ParamSpec(name="cls", type="choice", choices=NAMES, default=NAMES[0]),
    ))  # fmt: skip
    qtbot.addWidget(panel)
    short, long_ = panel.editors["short"], panel.editors["cls"]
    assert isinstance(short, QComboBox) and isinstance(long_, QComboBox)
    assert len(NAMES) > SEARCHABLE_CHOICES
    assert not short.isEditable() and long_.isEditable()

    # Any part of a name finds it, whatever the case.
    completer = long_.completer()
    completer.setCompletionPrefix("FISH 42")
    assert completer.completionCount() == 1
    assert completer.currentCompletion() == "goldfish 42"

    # Half-typed text is not a value; choosing a match is.
    long_.lineEdit().setText("goldf")
    assert panel.value("cls") == NAMES[0]
    qtbot.keyClicks(long_.lineEdit(), "ish 7")
    long_.setCurrentIndex(long_.findText("goldfish 7", Qt.MatchFlag.MatchExactly))
    assert panel.value("cls") == "goldfish 7"
    assert long_.count() == len(NAMES)  # typing added nothing


def test_an_int_with_value_names_lists_the_names_and_gives_the_number(qtbot) -> None:
    names = ("the model's own", *(f"instrument {i}" for i in range(128)))
    spec = ParamSpec(name="program", type="int", min=-1, max=127, default=-1, value_names=names)
    panel = ParamPanel((spec,))
    qtbot.addWidget(panel)
    combo = panel.editors["program"]
    assert isinstance(combo, QComboBox) and combo.count() == 129
    assert panel.value("program") == -1 and combo.currentText().startswith("the model's own")
    panel.set_value("program", 42)
    assert panel.value("program") == 42 and combo.currentText() == "instrument 42  (42)"
    panel.set_value("program", "Instrument 7")  # a name, as --set and restored files give it
    assert panel.value("program") == 7
    panel.set_value("program", "no such instrument")  # ignored, as a stale choice is
    assert panel.value("program") == 7
