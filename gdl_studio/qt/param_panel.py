"""A parameter panel generated from a plugin's typed parameter specs."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from PySide6.QtCore import QRegularExpression, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QRegularExpressionValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QCompleter,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QSpinBox,
    QStyle,
    QToolButton,
    QWidget,
)
from superqt import QLabeledDoubleSlider, QLabeledSlider

from gdl_studio.core.atomic import unused_path
from gdl_studio.core.imageio import InputError, open_image
from gdl_studio.core.params import SEED_MAX, ParamError, ParamSpec, random_seed
from gdl_studio.qt.mask_painter import MaskPainter

SEARCHABLE_CHOICES = 30  # a choice with more options than this is searched by typing

SLIDER_MAX_STEPS = 10_000  # beyond this a slider is too coarse: use a spin box
FILE_FILTERS = {
    "image": "Images (*.png *.jpg *.jpeg *.webp *.bmp *.gif *.tif *.tiff)",
    "mask": "Masks (*.png *.jpg *.jpeg *.webp *.bmp)",
    "midi": "MIDI files (*.mid *.midi)",
}


class SeedEditor(QWidget):
    """A seed with a dice button (new random seed) and a lock (keep it between runs)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edit = QLineEdit()
        self.edit.setValidator(QRegularExpressionValidator(QRegularExpression(r"\d{0,10}")))
        self.edit.setPlaceholderText("random")
        # Room for a whole seed (up to ten digits): a squeezed field shows only its tail.
        digits = self.edit.fontMetrics().horizontalAdvance("0" * 10)
        self.edit.setMinimumWidth(digits + 16)
        # Standard style icons and a plain word: emoji glyphs are missing from many Linux fonts.
        self.dice = QToolButton()
        self.dice.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_BrowserReload))
        self.dice.setToolTip("New random seed")
        self.lock = QToolButton(text="Lock", checkable=True)
        self.lock.setToolTip("Lock the seed: every run reuses it (unlocked: a new seed each run)")
        self.dice.clicked.connect(self.roll)
        self.edit.textChanged.connect(self.changed)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (self.edit, self.dice, self.lock):
            lay.addWidget(w)

    def roll(self) -> int:
        seed = random_seed()
        self.edit.setText(str(seed))
        return seed

    def value(self) -> int | None:
        text = self.edit.text().strip()
        return int(text) if text and int(text) <= SEED_MAX else None

    def set_value(self, value: Any) -> None:
        self.edit.setText("" if value is None else str(value))

    def seed_for_run(self) -> int:
        """The seed the next run uses: the shown one when locked, else a new one (shown)."""
        current = self.value()
        if self.lock.isChecked() and current is not None:
            return current
        return self.roll()


class FilePicker(QWidget):
    """A path field with a browse button; dropping a file on it fills it.  A mask picker
    also has "Paint…", which asks the panel to open the mask painter."""

    changed = Signal()
    paint_requested = Signal()

    def __init__(self, kind: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.kind = kind
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(f"drop a{'n' if kind == 'image' else ''} {kind} file here")
        self.edit.setClearButtonEnabled(True)
        self.edit.textChanged.connect(self.changed)
        browse = QToolButton(text="…")
        browse.setToolTip(f"Choose a {kind} file")
        browse.clicked.connect(self._browse)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.edit)
        lay.addWidget(browse)
        if kind == "mask":
            paint = QToolButton(text="Paint…")
            paint.setToolTip("Paint the mask over the photo (white: the plugin works there)")
            paint.clicked.connect(self.paint_requested)
            lay.addWidget(paint)
        self.setAcceptDrops(True)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, f"Choose a {self.kind}", "", FILE_FILTERS[self.kind]
        )
        if path:
            self.edit.setText(path)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = event.mimeData().urls()
        if urls and urls[0].isLocalFile():
            self.edit.setText(urls[0].toLocalFile())
            event.acceptProposedAction()

    def value(self) -> str | None:
        return self.edit.text().strip() or None

    def set_value(self, value: Any) -> None:
        self.edit.setText("" if value is None else str(value))


class NamedIntCombo(QComboBox):
    """An int parameter with a name for each value (value_names): the names are listed, the
    value is the number (searchable by typing, as a long choice is)."""

    def __init__(self, spec: ParamSpec, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        low = int(spec.min or 0)
        for i, name in enumerate(spec.value_names):
            self.addItem(f"{name}  ({low + i})", low + i)
        if self.count() > SEARCHABLE_CHOICES:
            _make_searchable(self)

    def value(self) -> int:
        return int(self.itemData(self.currentIndex()))

    def set_value(self, value: Any) -> None:
        index = self.findData(int(value))
        if index >= 0:
            self.setCurrentIndex(index)


def _make_searchable(combo: QComboBox) -> None:
    """A long list (e.g. DeepDream's 1,000 ImageNet classes) is searched by typing any part
    of a name; what is typed never becomes a choice of its own."""
    combo.setEditable(True)
    combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
    completer = combo.completer()
    completer.setFilterMode(Qt.MatchFlag.MatchContains)
    completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
    completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)


class ParamPanel(QWidget):
    """One editor per :class:`ParamSpec`; :meth:`values` gives what the user set."""

    changed = Signal()

    def __init__(self, specs: tuple[ParamSpec, ...] = (), parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._form = QFormLayout(self)
        self._form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.editors: dict[str, QWidget] = {}
        self.specs: tuple[ParamSpec, ...] = ()
        # Where painted masks are saved (the main window: <data dir>/masks), and the image to
        # paint over when no image parameter is set (the main window: the canvas's image).
        self.mask_folder: Path | None = None
        self.photo_provider: Callable[[], Image.Image | None] | None = None
        self.set_specs(specs)

    def set_specs(self, specs: tuple[ParamSpec, ...]) -> None:
        while self._form.rowCount():
            self._form.removeRow(0)
        self.editors = {}
        self.specs = specs
        for spec in specs:
            editor = self._editor(spec)
            editor.setToolTip(spec.help)
            editor.setObjectName(f"param_{spec.name}")
            self.editors[spec.name] = editor
            self._form.addRow(spec.title, editor)
            self.set_value(spec.name, spec.default)

    def _editor(self, spec: ParamSpec) -> QWidget:
        kind = spec.type
        if kind == "int":
            if spec.value_names:
                named = NamedIntCombo(spec)
                named.currentIndexChanged.connect(self.changed)
                return named
            if _slider_ok(spec, 1):
                s = QLabeledSlider(Qt.Orientation.Horizontal)
                s.setRange(int(spec.min), int(spec.max))  # type: ignore[arg-type]
                s.valueChanged.connect(self.changed)
                return s
            box = QSpinBox()
            box.setRange(int(spec.min if spec.min is not None else -(2**31)),
                         int(spec.max if spec.max is not None else 2**31 - 1))  # fmt: skip
            box.valueChanged.connect(self.changed)
            return box
        if kind == "float":
            step = spec.step or 0.01
            if _slider_ok(spec, step):
                d = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
                d.setRange(float(spec.min), float(spec.max))  # type: ignore[arg-type]
                d.setSingleStep(step)
                d.setDecimals(max(0, len(f"{step:g}".partition(".")[2])))
                d.valueChanged.connect(self.changed)
                return d
            dbox = QDoubleSpinBox()
            dbox.setDecimals(4)
            dbox.setRange(spec.min if spec.min is not None else -1e9,
                          spec.max if spec.max is not None else 1e9)  # fmt: skip
            dbox.setSingleStep(step)
            dbox.valueChanged.connect(self.changed)
            return dbox
        if kind == "choice":
            combo = QComboBox()
            combo.addItems(list(spec.choices))
            if len(spec.choices) > SEARCHABLE_CHOICES:
                _make_searchable(combo)
            combo.currentIndexChanged.connect(self.changed)
            return combo
        if kind == "bool":
            check = QCheckBox()
            check.toggled.connect(self.changed)
            return check
        if kind == "seed":
            seed = SeedEditor()
            seed.changed.connect(self.changed)
            return seed
        if kind == "text":
            if spec.multiline:
                text = QPlainTextEdit()
                text.setMaximumHeight(90)
                text.textChanged.connect(self.changed)
                return text
            line = QLineEdit()
            line.textChanged.connect(self.changed)
            return line
        picker = FilePicker(kind)
        picker.changed.connect(self.changed)
        if kind == "mask":
            picker.paint_requested.connect(lambda name=spec.name: self.paint_mask(name))
        return picker

    def _spec(self, name: str) -> ParamSpec:
        return next(spec for spec in self.specs if spec.name == name)

    def set_value(self, name: str, value: Any) -> None:
        editor = self.editors.get(name)
        if editor is None:
            return
        if isinstance(editor, (SeedEditor, FilePicker)):
            editor.set_value(value)
        elif value is None:
            return
        elif isinstance(editor, NamedIntCombo):  # before QComboBox: the value is the number
            with contextlib.suppress(ParamError):
                editor.set_value(self._spec(name).coerce(value))
            return
        elif isinstance(editor, QComboBox):
            idx = editor.findText(str(value))
            if idx >= 0:
                editor.setCurrentIndex(idx)
        elif isinstance(editor, QCheckBox):
            editor.setChecked(bool(value))
        elif isinstance(editor, QPlainTextEdit):
            editor.setPlainText(str(value))
        elif isinstance(editor, QLineEdit):
            editor.setText(str(value))
        # QLabeledDoubleSlider subclasses QLabeledSlider (superqt): test for it first, or a
        # float slider would be handed whole numbers.
        elif isinstance(editor, (QLabeledDoubleSlider, QDoubleSpinBox)):
            editor.setValue(float(value))
        elif isinstance(editor, (QLabeledSlider, QSpinBox)):
            editor.setValue(int(value))

    def paint_mask(self, name: str) -> None:
        """Open the mask painter over the photo; OK saves the mask as a PNG and sets ``name``
        to it.  The photo is the first image parameter's file, else the canvas's image."""
        photo = None
        for spec in self.specs:
            path = self.value(spec.name) if spec.type == "image" else None
            if path:
                try:
                    photo = open_image(Path(path), "RGB")
                except InputError as exc:
                    QMessageBox.warning(self, "Paint a mask", str(exc))
                    return
                break
        if photo is None and self.photo_provider is not None:
            photo = self.photo_provider()
        if photo is None:
            QMessageBox.information(
                self, "Paint a mask", "Set the photo first (drop one on the window)."
            )
            return
        old = None
        current = self.value(name)
        if current and Path(current).is_file():
            try:
                old = open_image(Path(current), "L")
            except InputError:
                old = None
        dialog = MaskPainter(photo, old, self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        folder = self.mask_folder or Path(tempfile.gettempdir()) / "gdl-studio-masks"
        folder.mkdir(parents=True, exist_ok=True)
        target = unused_path(folder, time.strftime("mask-%Y%m%d-%H%M%S"), ".png")
        dialog.mask().save(target)
        self.set_value(name, str(target))

    def set_values(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            self.set_value(name, value)

    def value(self, name: str) -> Any:
        editor = self.editors[name]
        if isinstance(editor, (SeedEditor, FilePicker, NamedIntCombo)):
            return editor.value()
        if isinstance(editor, QComboBox):  # the chosen item, not half-typed search text
            return editor.itemText(editor.currentIndex())
        if isinstance(editor, QCheckBox):
            return editor.isChecked()
        if isinstance(editor, QPlainTextEdit):
            return editor.toPlainText()
        if isinstance(editor, QLineEdit):
            return editor.text()
        if isinstance(editor, (QLabeledDoubleSlider, QDoubleSpinBox)):  # before QLabeledSlider
            return float(editor.value())
        if isinstance(editor, (QLabeledSlider, QSpinBox)):
            return int(editor.value())
        raise TypeError(f"{name}: no value for a {type(editor).__name__}")

    def values(self) -> dict[str, Any]:
        return {name: self.value(name) for name in self.editors}

    def values_for_run(self) -> dict[str, Any]:
        """Values for a new run: unlocked seeds are re-rolled (and shown) here."""
        out = self.values()
        for name, editor in self.editors.items():
            if isinstance(editor, SeedEditor):
                out[name] = editor.seed_for_run()
        return out

    def fill_file(self, path: Path, kind: str) -> str | None:
        """Put a dropped file into the first picker of ``kind``; returns the parameter name."""
        for spec in self.specs:
            if spec.type == kind:
                self.set_value(spec.name, str(path))
                return spec.name
        return None


def _slider_ok(spec: ParamSpec, step: float) -> bool:
    if spec.min is None or spec.max is None:
        return False
    return (spec.max - spec.min) / step <= SLIDER_MAX_STEPS
