"""The Plugins dialog: every discovered plugin with its state or error; enable / disable."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gdl_studio.core.discovery import PluginRegistry
from gdl_studio.qt.icons import kind_icon

COLUMNS = ("Plugin", "Kind", "Version", "Source", "State", "Enabled")


class PluginsDialog(QDialog):
    """Lists plugins; unticking *Enabled* disables a plugin (it is then never imported)."""

    enabled_changed = Signal(str, bool)

    def __init__(self, registry: PluginRegistry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Plugins")
        self.resize(820, 360)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(True)
        note = QLabel("A plugin that fails keeps its error here; the others go on working. "
                      "Disabled plugins are never imported.")  # fmt: skip
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(note)
        lay.addWidget(self.table)
        lay.addWidget(buttons)
        self.set_registry(registry)
        self.table.itemChanged.connect(self._changed)

    def set_registry(self, registry: PluginRegistry) -> None:
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        for rec in registry:
            row = self.table.rowCount()
            self.table.insertRow(row)
            m = rec.manifest
            name = QTableWidgetItem(kind_icon(m.kind if m else None, 16), f"{rec.name} ({rec.id})")
            cells = [name, QTableWidgetItem(m.kind if m else "?"),
                     QTableWidgetItem(m.version if m else "?"), QTableWidgetItem(rec.source),
                     QTableWidgetItem(rec.state)]  # fmt: skip
            enabled = QTableWidgetItem()
            enabled.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            enabled.setCheckState(
                Qt.CheckState.Unchecked if rec.disabled else Qt.CheckState.Checked
            )
            enabled.setData(Qt.ItemDataRole.UserRole, rec.id)
            cells.append(enabled)
            cells[4].setToolTip(rec.state)
            for col, item in enumerate(cells):
                if col < 5:
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        self.table.blockSignals(False)

    def _changed(self, item: QTableWidgetItem) -> None:
        if item.column() == 5:
            self.enabled_changed.emit(
                item.data(Qt.ItemDataRole.UserRole), item.checkState() == Qt.CheckState.Checked
            )
