"""Cell actions and the guessing game, read from a result's extra without Qt."""

from __future__ import annotations

from gdl_studio.core.cells import Quiz, cell_actions


def test_cell_actions_keep_only_well_formed_entries_that_cover_every_cell() -> None:
    extra = {
        "cell_actions": [
            {"label": "Alone", "params": [{"seed": 1}, {"seed": 2}], "run": True},
            {"label": "Short", "params": [{"seed": 1}]},  # one cell short: skipped
            {"label": "", "params": [{}, {}]},  # no label
            {"label": "Bad", "params": [1, 2]},  # not dicts
            "nonsense",
        ]
    }
    actions = cell_actions(extra, 2)
    assert [a.label for a in actions] == ["Alone"]
    assert actions[0].run and actions[0].params_for(1) == {"seed": 2}
    assert actions[0].params_for(2) is None
    assert cell_actions({"cell_actions": "x"}, 2) == [] and cell_actions({}, 2) == []


def test_params_for_returns_a_copy() -> None:
    (action,) = cell_actions({"cell_actions": [{"label": "A", "params": [{"seed": 1}]}]}, 1)
    got = action.params_for(0)
    assert got is not None
    got["seed"] = 99
    assert action.params_for(0) == {"seed": 1}


def test_quiz_scores_marks_and_freezes_after_reveal() -> None:
    extra = {"quiz": {"answer": [True, False, True, False], "marked_means": "generated",
                      "unmarked_means": "real", "prompt": "Which?"}}  # fmt: skip
    quiz = Quiz.from_extra(extra, 4)
    assert quiz is not None and quiz.prompt == "Which?"
    assert quiz.toggle(0) and quiz.toggle(1) and quiz.toggle(1) and quiz.toggle(3)
    assert quiz.marks == {0, 3}
    assert not quiz.toggle(7)
    summary = quiz.reveal()
    assert quiz.score() == (2, 4)  # 0 right (marked, generated), 1 right (unmarked, real)
    assert "found 1 of 2 generated" in summary and "marked 1 by mistake" in summary
    assert not quiz.toggle(2) and quiz.marks == {0, 3}  # the answer is out: no more changes
    assert [quiz.correct(i) for i in range(4)] == [True, True, False, False]
    quiz.reset()
    assert not quiz.revealed and not quiz.marks


def test_malformed_quizzes_are_ignored() -> None:
    assert Quiz.from_extra({}, 2) is None
    assert Quiz.from_extra({"quiz": {"answer": [True]}}, 2) is None  # wrong length
    assert Quiz.from_extra({"quiz": {"answer": [1, 0]}}, 2) is None  # not booleans
    assert Quiz.from_extra({"quiz": []}, 2) is None


def test_text_param_receives_the_text_on_the_canvas() -> None:
    extra = {"cell_actions": [{"label": "Continue", "params": [{"mode": "continue"}],
                               "text_param": "seed_text", "run": True}]}  # fmt: skip
    (action,) = cell_actions(extra, 1)
    assert action.params_for(0, "To be, or") == {"mode": "continue", "seed_text": "To be, or"}
    assert action.params_for(0) == {"mode": "continue"}  # no text: nothing filled in
    bad = {"cell_actions": [{"label": "C", "params": [{}], "text_param": 3}]}
    assert cell_actions(bad, 1)[0].text_param is None


def test_a_marking_has_no_answer_and_an_action_takes_its_marks() -> None:
    extra = {
        "marking": {"prompt": "Mark the ones with glasses", "marked_means": "with"},
        "cell_actions": [
            {"label": "Slide", "params": [{"point": f"#{i}"} for i in (5, 9, 12)],
             "marks": {"marked": "with_items", "unmarked": "without_items",
                       "ids": ["5", "9", "12"]}},
            {"label": "Bad marks", "params": [{}, {}, {}], "marks": {"marked": "w"}},
        ],
    }  # fmt: skip
    quiz = Quiz.from_extra(extra, 3)
    assert quiz is not None and quiz.open and quiz.prompt == "Mark the ones with glasses"
    assert quiz.toggle(0) and quiz.toggle(2)
    assert quiz.reveal() == "2 of 3 marked with" and not quiz.revealed  # stays open
    assert quiz.toggle(2) and quiz.marks == {0}
    (slide,) = cell_actions(extra, 3)  # an action with malformed marks is dropped
    assert slide.params_for(1, marks={0, 2}) == {
        "point": "#9", "with_items": "5 12", "without_items": "9"
    }  # fmt: skip
    assert slide.params_for(1)["with_items"] == ""  # no marks: everything is "without"
    # A real quiz wins over a marking in the same extra.
    both = {**extra, "quiz": {"answer": [True, False, True]}}
    assert not Quiz.from_extra(both, 3).open
