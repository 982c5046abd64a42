"""TextCanvas: streaming, exact text, probability colouring, clipboard, menu and scrolling."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QTextCharFormat, QTextCursor

from gdl_studio.qt.canvases.text_canvas import TextCanvas

SAMPLE = "To be, or not to be — that is the question:\nWhether 'tis nobler 🙂 in the mind\r\n" * 3


@pytest.fixture
def canvas(qtbot) -> TextCanvas:
    widget = TextCanvas()
    qtbot.addWidget(widget)
    widget.resize(400, 200)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def char_format(canvas: TextCanvas, position: int) -> QTextCharFormat:
    """Format of the character at document `position`."""
    cursor = QTextCursor(canvas.editor().document())
    cursor.setPosition(position + 1)  # charFormat() is that of the character before the cursor
    return cursor.charFormat()


def has_tint(canvas: TextCanvas, position: int) -> bool:
    return char_format(canvas, position).hasProperty(QTextCharFormat.Property.BackgroundBrush)


def chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_appending_chunks_gives_exact_concatenation(canvas: TextCanvas) -> None:
    for chunk in chunks(SAMPLE, 50):
        canvas.append_text(chunk)
    assert canvas.text() == SAMPLE  # "\r\n" and the emoji kept exactly
    assert canvas.editor().toPlainText() == SAMPLE.replace("\r\n", "\n")


def test_set_text_replaces_and_clear_empties(canvas: TextCanvas) -> None:
    canvas.append_text("old ")
    canvas.set_text("new text")
    assert canvas.text() == "new text"
    assert canvas.editor().toPlainText() == "new text"
    canvas.append_text("!")
    assert canvas.text() == "new text!"
    canvas.clear()
    assert canvas.text() == "" and canvas.editor().toPlainText() == ""


def test_mismatched_probabilities_do_not_break_the_display(canvas: TextCanvas) -> None:
    canvas.set_colour_by_probability(True)
    canvas.append_text("abc", [0.1, 0.2])  # too few: the rest stays plain
    canvas.append_text("de", [0.1, 0.1, 0.1, 0.1])  # too many: extras dropped
    canvas.append_text("f", [0.1])
    assert canvas.text() == "abcdef"
    assert [has_tint(canvas, i) for i in range(6)] == [True, True, False, True, True, True]


def test_toggling_colour_keeps_the_selection(canvas: TextCanvas) -> None:
    canvas.set_text("hello world", [0.1] * 11)
    editor = canvas.editor()
    cursor = editor.textCursor()
    cursor.setPosition(2)
    cursor.setPosition(7, QTextCursor.MoveMode.KeepAnchor)
    editor.setTextCursor(cursor)
    canvas.set_colour_by_probability(True)
    assert has_tint(canvas, 0)
    assert editor.textCursor().selectedText() == "llo w"


def test_colour_by_probability_tints_low_probability_characters(canvas: TextCanvas) -> None:
    canvas.set_text("abc", [0.02, 0.99, 0.5])
    assert not any(has_tint(canvas, i) for i in range(3))  # off by default
    spy = []
    canvas.colour_by_probability_changed.connect(spy.append)
    canvas.set_colour_by_probability(True)  # re-renders the stored text with its probs
    assert spy == [True]
    assert canvas.text() == "abc"
    assert has_tint(canvas, 0) and not has_tint(canvas, 1) and has_tint(canvas, 2)
    low = char_format(canvas, 0).background().color()
    mid = char_format(canvas, 2).background().color()
    assert low.hue() < mid.hue()  # red for unlikely, towards yellow for likelier
    assert low.alpha() > mid.alpha()  # and stronger
    assert "probability" in canvas.editor().viewport().toolTip()
    canvas.set_colour_by_probability(False)
    assert not any(has_tint(canvas, i) for i in range(3))
    assert canvas.editor().viewport().toolTip() == ""


def test_streamed_probabilities_align_with_characters(canvas: TextCanvas) -> None:
    canvas.set_colour_by_probability(True)
    text = "x" * 120
    probs = [0.05 if i in (7, 64, 119) else 0.97 for i in range(len(text))]
    for i in range(0, len(text), 50):
        canvas.append_text(text[i : i + 50], probs[i : i + 50])
    canvas.append_text("plain")  # no probs: never tinted
    tinted = [i for i in range(len(canvas.text())) if has_tint(canvas, i)]
    assert tinted == [7, 64, 119]


def test_copy_all_puts_text_on_clipboard(canvas: TextCanvas) -> None:
    canvas.set_text(SAMPLE)
    QGuiApplication.clipboard().clear()
    canvas.copy_all()
    assert QGuiApplication.clipboard().text() == SAMPLE


def test_ctrl_c_copies_selection_or_everything(canvas: TextCanvas, qtbot) -> None:
    canvas.set_text("hello world")
    editor = canvas.editor()
    ctrl = Qt.KeyboardModifier.ControlModifier
    qtbot.keyClick(editor, Qt.Key.Key_C, ctrl)
    assert QGuiApplication.clipboard().text() == "hello world"
    cursor = editor.textCursor()
    cursor.setPosition(6)
    cursor.setPosition(11, QTextCursor.MoveMode.KeepAnchor)
    editor.setTextCursor(cursor)
    qtbot.keyClick(editor, Qt.Key.Key_C, ctrl)
    assert QGuiApplication.clipboard().text() == "world"


def test_ctrl_c_is_not_taken_by_window_shortcuts(canvas: TextCanvas) -> None:
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QKeyEvent
    from PySide6.QtWidgets import QApplication

    ctrl = Qt.KeyboardModifier.ControlModifier
    ctrl_c = QKeyEvent(QEvent.Type.ShortcutOverride, Qt.Key.Key_C, ctrl)
    ctrl_c.ignore()
    QApplication.sendEvent(canvas.editor(), ctrl_c)
    assert ctrl_c.isAccepted()


def test_read_only(canvas: TextCanvas, qtbot) -> None:
    canvas.set_text("fixed")
    qtbot.keyClicks(canvas.editor(), "typed")
    assert canvas.text() == "fixed" and canvas.editor().toPlainText() == "fixed"


def action(canvas: TextCanvas, text: str):
    return next(a for a in canvas.context_menu().actions() if a.text() == text)


def test_menu_save_emits_save_requested(canvas: TextCanvas, qtbot) -> None:
    assert not action(canvas, "Save as .txt…").isEnabled()  # nothing to save yet
    canvas.set_text("poem")
    with qtbot.waitSignal(canvas.save_requested, timeout=1000):
        action(canvas, "Save as .txt…").trigger()


def test_menu_copy_all_and_colour_toggle(canvas: TextCanvas) -> None:
    canvas.set_text("ab", [0.01, 0.01])
    QGuiApplication.clipboard().clear()
    action(canvas, "Copy all").trigger()
    assert QGuiApplication.clipboard().text() == "ab"
    colour = action(canvas, "Colour by probability")
    assert colour.isCheckable() and not colour.isChecked()
    colour.trigger()
    assert canvas.colour_by_probability() and has_tint(canvas, 0)
    assert action(canvas, "Colour by probability").isChecked()


def test_monospace_switch(canvas: TextCanvas) -> None:
    proportional = canvas.editor().font().family()
    action(canvas, "Monospace font").trigger()
    assert canvas.monospace()
    canvas.set_monospace(False)
    assert canvas.editor().font().family() == proportional


def test_placeholder_shown_when_empty(canvas: TextCanvas) -> None:
    blank = canvas.grab().toImage()
    canvas.set_placeholder("Press Ctrl+Enter to generate")
    assert canvas.editor().placeholderText() == "Press Ctrl+Enter to generate"
    assert canvas.grab().toImage() != blank


def test_scroll_follows_end_unless_user_scrolled_up(canvas: TextCanvas) -> None:
    bar = canvas.editor().verticalScrollBar()
    for i in range(100):
        canvas.append_text(f"line {i}\n")
    assert bar.maximum() > 0 and bar.value() == bar.maximum()
    bar.setValue(0)  # the user scrolls up to read
    for i in range(20):
        canvas.append_text(f"more {i}\n")
    assert bar.value() == 0
    bar.setValue(bar.maximum())  # back at the end: following again
    canvas.append_text("last\n" * 10)
    assert bar.value() == bar.maximum()


def test_many_tinted_appends_keep_every_character_and_tint(canvas: TextCanvas) -> None:
    # Streaming speed is measured by benchmarks/window_latency.py, not asserted here.
    canvas.set_colour_by_probability(True)
    text = ("The quick brown fox jumps over the lazy dog. " * 3)[:50]
    # The tint changes every few characters, as with real model output.
    probs = [((i // 5) % 10) / 10 for i in range(50)]
    for _ in range(100):
        canvas.append_text(text, probs)
    assert canvas.text() == text * 100
    # The last chunk is tinted like the first: unlikely (red) then likely (untinted) bands.
    first, last = char_format(canvas, 0), char_format(canvas, 4950)
    assert first.background().color() == last.background().color()
    assert first.background().color() != char_format(canvas, 4999).background().color()


def test_set_text_drops_the_previous_selection(qtbot) -> None:
    canvas = TextCanvas()
    qtbot.addWidget(canvas)
    canvas.set_text("first result text")
    canvas.editor().selectAll()
    canvas.set_text("a completely different second result")
    assert canvas.editor().textCursor().selectedText() == ""
