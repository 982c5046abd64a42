"""Help → Keyboard shortcuts: every key the list names does what it says where it says."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PIL import Image
from PySide6.QtCore import QEvent, Qt, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QGuiApplication, QKeyEvent, QKeySequence
from PySide6.QtWidgets import QApplication

from gdl_studio.core.cells import Quiz
from gdl_studio.qt.canvases.image_canvas import ImageCanvas
from gdl_studio.qt.canvases.text_canvas import TextCanvas
from gdl_studio.qt.main_window import MainWindow
from gdl_studio.qt.shortcuts import SHORTCUTS, is_key


def keys_of(where: str) -> list[str]:
    rows = [keys for place, keys, _ in SHORTCUTS if place == where and is_key(keys)]
    assert rows, where
    return rows


def key_event(keys: str) -> QKeyEvent:
    combo = QKeySequence(keys)[0]
    return QKeyEvent(QEvent.Type.KeyPress, combo.key(), combo.keyboardModifiers())


def press(widget, keys: str) -> bool:
    """Send the key to ``widget``; whether it took it."""
    event = key_event(keys)
    QApplication.sendEvent(widget, event)
    return event.isAccepted()


def test_every_window_shortcut_is_an_action_of_the_window(window: MainWindow) -> None:
    actions = window.findChildren(QAction)
    for keys in keys_of("Window"):
        sequence = QKeySequence(keys)
        assert any(sequence in a.shortcuts() for a in actions), keys


def test_f1_lists_every_shortcut(qtbot, window: MainWindow) -> None:
    (action,) = [a for a in window.findChildren(QAction) if QKeySequence("F1") in a.shortcuts()]
    action.trigger()
    dialog = window.show_shortcuts()
    qtbot.addWidget(dialog)
    assert dialog.table.rowCount() == len(SHORTCUTS)
    assert dialog.table.item(0, 1).text() == SHORTCUTS[0][1]


def test_every_image_key_does_something(qtbot) -> None:
    canvas = ImageCanvas()
    qtbot.addWidget(canvas)
    canvas.resize(300, 300)
    canvas.show()
    canvas.set_images([Image.new("RGB", (8, 8), (i * 60, 0, 0)) for i in range(4)])
    canvas.set_selected_index(1)  # a middle cell: every arrow has somewhere to go
    for keys in keys_of("Images"):
        assert canvas._key_action(key_event(keys)) is not None, keys
    canvas.set_quiz(Quiz((True, False, True, False)))
    for keys in keys_of("Guessing game"):
        assert canvas._key_action(key_event(keys)) is not None, keys


def test_every_piano_roll_key_does_something(qtbot, roll) -> None:
    canvas, player = roll
    canvas.set_drawing(True)  # and remove a note, for Ctrl+Z to bring back
    centre = canvas.view.note_rect(canvas.notes()[0]).center().toPoint()
    qtbot.mouseClick(canvas.view, Qt.MouseButton.LeftButton, pos=centre)
    assert len(canvas.notes()) == 1
    for keys in keys_of("Piano roll"):
        before = (len(player.plays), canvas.drawing(), len(canvas.notes()))
        assert press(canvas, keys), keys
        assert (len(player.plays), canvas.drawing(), len(canvas.notes())) != before, keys


def test_the_history_delete_key_trashes_the_selected_entry(qtbot, window, monkeypatch) -> None:
    moved: list[str] = []
    monkeypatch.setattr("send2trash.send2trash", moved.append)  # never the user's own trash
    window.select_plugin("tinygen")
    with qtbot.waitSignal(window.runner.finished, timeout=10_000):
        window.generate()
    window.gallery.setCurrentRow(0)
    path = window.gallery.entry_at(0).path
    (keys,) = keys_of("History")
    assert press(window.gallery, keys)
    assert moved == [str(path)]


def test_the_text_copy_key_copies(qtbot) -> None:
    canvas = TextCanvas()
    qtbot.addWidget(canvas)
    canvas.show()
    canvas.set_text("hello world")
    canvas.editor().selectAll()
    QGuiApplication.clipboard().clear()
    for keys in keys_of("Text"):
        press(canvas.editor(), keys)
    assert QGuiApplication.clipboard().text() == "hello world"


def test_show_the_history_folder(window: MainWindow, monkeypatch) -> None:
    opened: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    assert window.open_history_folder()
    assert opened[0].toLocalFile() == str(window.studio.paths.history)
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: False)
    assert not window.open_history_folder()  # no file manager: the message says where
    assert str(window.studio.paths.history) in window.messages.item(0).text()
