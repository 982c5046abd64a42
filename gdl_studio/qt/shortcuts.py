"""Help → Keyboard shortcuts: every key and mouse gesture of the window and its canvases in
one list, so that none has to be found by accident.

The table is data (``SHORTCUTS``) so that the tests can hold each key against what the window
and the canvases really do: a key listed here that does nothing fails them.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

# (where, keys, what).  Keys are QKeySequence text (portable form) unless they name a mouse
# gesture (a "wheel", "drag" or "click" in them).
SHORTCUTS: tuple[tuple[str, str, str], ...] = (
    ("Window", "Ctrl+Return", "Generate with the panel's settings"),
    ("Window", "Esc", "Cancel the running job"),
    ("Window", "Ctrl+O", "Open a saved output (restores its plugin and parameters)"),
    ("Window", "Ctrl+S", "Save the result shown as…"),
    ("Window", "Ctrl+Q", "Quit"),
    ("Window", "F1", "This list"),
    ("Images", "Ctrl+=", "Zoom in"),
    ("Images", "Ctrl+-", "Zoom out"),
    ("Images", "Mouse wheel", "Zoom at the pointer"),
    ("Images", "F", "Fit to the window"),
    ("Images", "Ctrl+0", "Fit to the window"),
    ("Images", "Ctrl+1", "Actual size (1:1)"),
    ("Images", "Left drag / middle drag", "Pan"),
    ("Images", "Left", "Select the previous cell of a batch"),
    ("Images", "Right", "Select the next cell"),
    ("Images", "Up", "Select the cell above"),
    ("Images", "Down", "Select the cell below"),
    ("Images", "Ctrl+C", "Copy the selected image"),
    ("Images", "Double-click a cell", "The cell's first action (listed first on right-click)"),
    ("Images", "Right-click", "Save, copy, fit, and the cell's actions"),
    ("Guessing game", "Space", "Mark the selected cell as generated"),
    ("Guessing game", "Return", "Show the answer"),
    ("Text", "Ctrl+C", "Copy the selection"),
    ("History", "Del", "Move the selected result to the trash"),
    ("History", "Right-click", "Show it, use its settings, or move it to the trash"),
    ("Piano roll", "Space", "Play / stop"),
    ("Piano roll", "D", "Draw notes on / off (click a note to remove it)"),
    ("Piano roll", "Ctrl+Z", "Undo the last drawn note"),
    ("Piano roll", "Drag on the ruler", "Select a range to loop"),
    ("Piano roll", "Mouse wheel", "Scroll up and down the keys"),
    ("Piano roll", "Shift+mouse wheel", "Scroll in time"),
    ("Piano roll", "Ctrl+mouse wheel", "Zoom in time"),
)


def is_key(keys: str) -> bool:
    """Whether ``keys`` is a key sequence (not a mouse gesture)."""
    return not any(word in keys.lower() for word in ("wheel", "drag", "click"))


class ShortcutsDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.table = QTableWidget(len(SHORTCUTS), 3)
        self.table.setHorizontalHeaderLabels(["Where", "Keys", "What it does"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        for row, cells in enumerate(SHORTCUTS):
            for col, text in enumerate(cells):
                self.table.setItem(row, col, QTableWidgetItem(text))
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table)
        lay.addWidget(buttons)
        self.resize(620, 560)
