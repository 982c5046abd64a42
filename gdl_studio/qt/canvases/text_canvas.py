"""A read-only view for streamed model text, optionally tinted by per-character probability."""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Sequence

from PySide6.QtCore import QEvent, QObject, QPoint, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFontDatabase,
    QGuiApplication,
    QKeyEvent,
    QKeySequence,
    QPalette,
    QTextCharFormat,
    QTextCursor,
)
from PySide6.QtWidgets import QMenu, QPlainTextEdit, QVBoxLayout, QWidget

_BANDS = 10  # probability bands; equal tints let neighbouring characters share one fragment
_UNTINTED_FROM = 0.9  # characters the model was this sure of stay plain: they are unremarkable


def _tint(p: float) -> QColor:
    """Background for probability `p` < _UNTINTED_FROM: red when unlikely, fading to yellow."""
    t = min(max(p / _UNTINTED_FROM, 0.0), 1.0)
    # Translucent, so the tint reads on light and dark palettes alike.
    return QColor.fromHsv(round(55 * t), 230, 255, round(190 - 140 * t))


def _band(p: float) -> int | None:
    """Probability band of a character, or None when it stays plain (no prob, or a likely one)."""
    if math.isnan(p) or p >= _UNTINTED_FROM:
        return None
    return min(max(int(p * _BANDS), 0), _BANDS - 1)


class TextCanvas(QWidget):
    """Shows generated text as it streams in; selectable, copyable, colourable by probability."""

    save_requested = Signal()  # the host writes text() to a file with provenance
    colour_by_probability_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # The exact text lives here, not in the document, which folds "\r\n" into a block break.
        self._parts: list[str] = []  # joined lazily by text(): appends stay O(chunk)
        self._probs = array("d")  # one per character; NaN where the model gave none
        self._colour = False
        self._monospace = False
        # Set by the window: adds its own entries (a plugin's actions on the text) to the menu.
        self.extend_menu: Callable[[QMenu, int], None] | None = None
        self._plain = QTextCharFormat()
        self._tints: list[QTextCharFormat] = []
        for band in range(_BANDS):
            fmt = QTextCharFormat()
            fmt.setBackground(_tint((band + 0.5) / _BANDS))
            self._tints.append(fmt)

        self._edit = QPlainTextEdit(self)
        self._edit.setReadOnly(True)
        self._edit.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
            | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        self._edit.document().setUndoRedoEnabled(False)  # read-only: an undo stack only costs
        self._edit.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self._edit.customContextMenuRequested.connect(self._show_menu)
        self._edit.installEventFilter(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._edit)
        self.setFocusProxy(self._edit)

    # -- content ----------------------------------------------------------------------------
    def text(self) -> str:
        """Everything shown, exactly as given (newline styles included)."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def clear(self) -> None:
        """Remove all text (the placeholder shows again)."""
        self._parts = []
        self._probs = array("d")
        self._edit.clear()

    def set_text(self, text: str, probs: Sequence[float] | None = None) -> None:
        """Replace the text; the view stays at the end if it was following it."""
        self._parts = [text] if text else []
        self._probs = self._aligned(text, probs)
        self._edit.setTextCursor(QTextCursor(self._edit.document()))  # a new text: no old selection
        self._rerender()

    def append_text(self, text: str, probs: Sequence[float] | None = None) -> None:
        """Add a streamed chunk; the view follows the end unless the user scrolled up."""
        if not text:
            return
        chunk_probs = self._aligned(text, probs)
        self._probs.extend(chunk_probs)
        self._parts.append(text)
        bar = self._edit.verticalScrollBar()
        following = bar.value() >= bar.maximum()
        cursor = QTextCursor(self._edit.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        self._insert(cursor, text, None if probs is None else chunk_probs)
        if following:
            bar.setValue(bar.maximum())

    def set_placeholder(self, text: str) -> None:
        """Text shown greyed while there is no content."""
        self._edit.setPlaceholderText(text)

    def editor(self) -> QPlainTextEdit:
        """The inner text view, for host features such as find."""
        return self._edit

    @staticmethod
    def _aligned(text: str, probs: Sequence[float] | None) -> array:
        # One prob per character is expected; a plugin that sends too few or too many must
        # not break the display, so extras are dropped and missing ones stay plain (NaN).
        given = array("d", (float(p) for p in probs[: len(text)])) if probs is not None else []
        return array("d", given) + array("d", [math.nan]) * (len(text) - len(given))

    # -- rendering --------------------------------------------------------------------------
    def colour_by_probability(self) -> bool:
        return self._colour

    def set_colour_by_probability(self, on: bool) -> None:
        """Tint each character's background by its probability (low = warm, likely = plain)."""
        if on == self._colour:
            return
        self._colour = on
        self._edit.viewport().setToolTip(self.legend() if on else "")
        self._rerender()
        self.colour_by_probability_changed.emit(on)

    def monospace(self) -> bool:
        return self._monospace

    def set_monospace(self, on: bool) -> None:
        """Use the system fixed-width font instead of the proportional one."""
        self._monospace = on
        fixed = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self._edit.setFont(fixed if on else self.font())

    def legend(self) -> str:
        """Rich-text legend of the probability tints (used as the tooltip)."""
        base = self.palette().color(QPalette.ColorRole.Base)
        cells = []
        for band in range(round(_UNTINTED_FROM * _BANDS)):
            tint = _tint((band + 0.5) / _BANDS)
            a = tint.alphaF()
            # Tooltips ignore alpha, so show the colour as it looks over the text background.
            pairs = zip(tint.getRgbF()[:3], base.getRgbF()[:3], strict=True)
            shown = QColor.fromRgbF(*(c * a + b * (1 - a) for c, b in pairs))
            label = f"{band * 100 // _BANDS}–{(band + 1) * 100 // _BANDS}%"
            cells.append(f'<td style="background-color:{shown.name()}">&nbsp;{label}&nbsp;</td>')
        return (
            "<b>Background: the model's probability for each character</b>"
            f"<table cellspacing=1><tr>{''.join(cells)}</tr></table>"
            f"No tint: {round(_UNTINTED_FROM * 100)}% or more, or no probability given."
        )

    def _rerender(self) -> None:
        bar = self._edit.verticalScrollBar()
        following, value = bar.value() >= bar.maximum(), bar.value()
        old = self._edit.textCursor()
        anchor, position = old.anchor(), old.position()
        self._edit.clear()
        self._insert(QTextCursor(self._edit.document()), self.text(), self._probs)
        # Toggling the colours leaves the characters alone, so keep the user's selection.
        end = self._edit.document().characterCount() - 1
        cursor = self._edit.textCursor()
        cursor.setPosition(min(anchor, end))
        cursor.setPosition(min(position, end), QTextCursor.MoveMode.KeepAnchor)
        self._edit.setTextCursor(cursor)
        bar.setValue(bar.maximum() if following else value)

    def _insert(self, cursor: QTextCursor, text: str, probs: Sequence[float] | None) -> None:
        cursor.beginEditBlock()  # one layout pass per chunk, not per tinted run
        if not self._colour or probs is None or not text:
            cursor.insertText(text, self._plain)
        else:
            # Insert runs of equal tint at once: far fewer calls and fragments than per char.
            start, band = 0, _band(probs[0])
            for i in range(1, len(text)):
                next_band = _band(probs[i])
                if next_band != band:
                    cursor.insertText(text[start:i], self._format(band))
                    start, band = i, next_band
            cursor.insertText(text[start:], self._format(band))
        cursor.endEditBlock()

    def _format(self, band: int | None) -> QTextCharFormat:
        # Always an explicit format: the cursor would otherwise carry on the previous tint.
        return self._plain if band is None else self._tints[band]

    # -- clipboard and menu -----------------------------------------------------------------
    def copy(self) -> None:
        """Copy the selection, or all the text when nothing is selected."""
        if self._edit.textCursor().hasSelection():
            self._edit.copy()
        else:
            self.copy_all()

    def copy_all(self) -> None:
        """Put the whole text on the clipboard."""
        QGuiApplication.clipboard().setText(self.text())

    def context_menu(self) -> QMenu:
        """Build the context menu (the host may add to it before showing)."""
        menu = QMenu(self)
        menu.setToolTipsVisible(True)
        has_text = bool(self.text())
        copy = menu.addAction("Copy")
        copy.setShortcut(QKeySequence(QKeySequence.StandardKey.Copy))
        copy.setShortcutVisibleInContextMenu(True)
        copy.setEnabled(self._edit.textCursor().hasSelection())
        copy.triggered.connect(self._edit.copy)
        copy_all = menu.addAction("Copy all")
        copy_all.setEnabled(has_text)
        copy_all.triggered.connect(self.copy_all)
        menu.addSeparator()
        save = menu.addAction("Save as .txt…")
        save.setEnabled(has_text)
        save.triggered.connect(lambda: self.save_requested.emit())
        menu.addSeparator()
        colour = menu.addAction("Colour by probability")
        colour.setCheckable(True)
        colour.setChecked(self._colour)
        colour.setToolTip(self.legend())
        colour.toggled.connect(self.set_colour_by_probability)
        mono = menu.addAction("Monospace font")
        mono.setCheckable(True)
        mono.setChecked(self._monospace)
        mono.toggled.connect(self.set_monospace)
        if self.extend_menu is not None and has_text:
            self.extend_menu(menu, 0)  # the window's actions on the text (e.g. continue it)
        return menu

    def _show_menu(self, pos: QPoint) -> None:
        menu = self.context_menu()
        menu.exec(self._edit.viewport().mapToGlobal(pos))
        menu.deleteLater()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        is_copy = (
            watched is self._edit
            and isinstance(event, QKeyEvent)
            and event.matches(QKeySequence.StandardKey.Copy)
        )
        if is_copy and event.type() == QEvent.Type.ShortcutOverride:
            # A read-only editor lets a window-level Copy action take Ctrl+C; keep it here.
            event.accept()
            return True
        if is_copy and event.type() == QEvent.Type.KeyPress:
            self.copy()  # with nothing selected this copies everything, unlike the plain editor
            return True
        return super().eventFilter(watched, event)
