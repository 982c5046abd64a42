"""The studio window: plugin list, generated parameter panel, canvases, gallery, status."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, Qt, QTimer, QUrl
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QProgressDialog,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from gdl_studio import __version__
from gdl_studio.core.atomic import atomic_write, unused_path
from gdl_studio.core.cells import CellAction, Quiz, cell_actions
from gdl_studio.core.discovery import PluginRecord
from gdl_studio.core.history import HistoryEntry
from gdl_studio.core.host import IMAGE_SUFFIXES, MIDI_SUFFIXES, JobError, Studio, prepare_job
from gdl_studio.core.manifest import specs_for_model
from gdl_studio.core.midi_synth import RenderCancelled, SoundFontError, render_midi, wav_bytes
from gdl_studio.core.results import (
    ALSO_ACCEPTED,
    EXTENSIONS,
    Preview,
    Provenance,
    Result,
    load_result,
    read_provenance,
    save_result,
)
from gdl_studio.core.soundfont import HOW_TO_ADD_SOUNDFONT, choose_soundfont
from gdl_studio.qt.canvases.image_canvas import ImageCanvas
from gdl_studio.qt.canvases.piano_roll import PianoRollCanvas
from gdl_studio.qt.canvases.text_canvas import TextCanvas
from gdl_studio.qt.gallery import Gallery
from gdl_studio.qt.icons import kind_icon
from gdl_studio.qt.param_panel import ParamPanel
from gdl_studio.qt.plugin_canvas import PluginCanvases
from gdl_studio.qt.plugins_dialog import PluginsDialog
from gdl_studio.qt.shortcuts import ShortcutsDialog
from gdl_studio.qt.worker import Finished, JobRunner

log = logging.getLogger(__name__)
HISTORY_SHOWN = 200  # the gallery shows the newest entries; older ones stay on disk
AUDIO_RATE = 44100  # Export audio: CD rate, what every editor and player takes
ID_ROLE = Qt.ItemDataRole.UserRole


class MainWindow(QMainWindow):
    """One window, one job at a time; every result is in the history before it is shown."""

    def __init__(self, studio: Studio) -> None:
        super().__init__()
        self.studio = studio
        self.setWindowTitle(f"GDL Studio {__version__}")
        self.resize(1200, 780)
        self.setAcceptDrops(True)
        self.runner = JobRunner(studio.history, self)
        self.current: tuple[Result, Provenance, Path | None] | None = None
        self._planned_provider = "–"
        self._provider_by_plugin: dict[str, str] = {}  # what really ran each plugin's last job
        self._plugin: PluginRecord | None = None
        self._build_canvases()
        self._build_side_panel()
        self._build_gallery()
        self._build_messages()
        self._build_status()
        self._build_menus()
        self._connect_runner()
        self.refresh_plugins()
        self._restore_window()
        self._load_history()
        # The provider readout needs onnxruntime (0.3 s): read it after the window is up.
        QTimer.singleShot(150, self._show_planned_provider)
        if studio.settings.load_error:
            self.notify(studio.settings.load_error)
        for reason in studio.assets.refused.values():  # shipped files that failed SHA256SUMS
            self.notify(reason, error=True)

    # -- construction -------------------------------------------------------------------------
    def _build_canvases(self) -> None:
        self.image_canvas = ImageCanvas()
        self.text_canvas = TextCanvas()
        self.piano_roll = PianoRollCanvas()
        self.piano_roll.set_soundfont(choose_soundfont(self.studio.settings.get("soundfont")))
        for canvas in (self.image_canvas, self.text_canvas, self.piano_roll):
            canvas.set_placeholder("Choose a plugin and press Ctrl+Enter to generate")
        self.image_canvas.save_requested.connect(lambda i: self.save_current(index=i))
        self.image_canvas.extend_menu = self._add_cell_actions
        self.text_canvas.extend_menu = self._add_cell_actions
        self.image_canvas.cell_activated.connect(self._cell_activated)
        self.image_canvas.quiz_changed.connect(self._quiz_changed)
        self.cell_actions: list[CellAction] = []
        self.text_canvas.save_requested.connect(lambda: self.save_current())
        self.piano_roll.export_requested.connect(self.export_roll)
        self.piano_roll.export_audio_requested.connect(self.export_audio)
        self.piano_roll.use_as_input_requested.connect(self.use_drawn_notes)
        self.canvases = QStackedWidget()
        self.canvas_for = {"image": self.image_canvas, "text": self.text_canvas,
                           "midi": self.piano_roll}  # fmt: skip
        for canvas in self.canvas_for.values():
            self.canvases.addWidget(canvas)
        # A plugin's own canvas (its manifest's `widgets` entry) for the results it takes.
        self.plugin_canvases = PluginCanvases(
            self.studio, self.canvases, self.notify, self.gallery_add, lambda: self.save_current()
        )
        # A line above the canvas for results that ask something of the user (a guessing game).
        self.canvas_hint = QLabel()
        self.canvas_hint.setObjectName("canvas_hint")
        self.canvas_hint.setWordWrap(True)
        self.canvas_hint.hide()
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.canvas_hint)
        lay.addWidget(self.canvases, 1)
        self.setCentralWidget(central)

    def _build_side_panel(self) -> None:
        side = QWidget()
        lay = QVBoxLayout(side)
        self.plugin_list = QListWidget()
        self.plugin_list.setObjectName("plugin_list")
        self.plugin_list.currentItemChanged.connect(self._plugin_selected)
        self.model_combo = QComboBox()
        self.model_combo.setObjectName("model_combo")
        self.model_combo.setToolTip("The model this plugin runs")
        self.model_combo.currentIndexChanged.connect(self._model_changed)
        self.description = QLabel()
        self.description.setWordWrap(True)
        self.panel = ParamPanel()
        self.panel.mask_folder = self.studio.paths.data / "masks"
        self.panel.photo_provider = lambda: self.image_canvas.current_image()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.panel)
        # The panel scrolls up and down only: sideways, the dock widens to fit it (see
        # _fit_panel), so no value or button is ever cut off at the right edge.
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.panel_scroll = scroll
        self.generate_button = QPushButton("Generate  (Ctrl+Enter)")
        self.generate_button.setObjectName("generate")
        self.generate_button.setMinimumHeight(36)
        self.generate_button.clicked.connect(self.toggle_generate)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.setFormat("ready")
        self.progress.setValue(0)  # a bar with no value yet (-1) shows no text at all
        lay.addWidget(QLabel("<b>Plugins</b>"))
        lay.addWidget(self.plugin_list)
        lay.addWidget(QLabel("Model"))
        lay.addWidget(self.model_combo)
        lay.addWidget(self.description)
        lay.addWidget(scroll, 1)
        lay.addWidget(self.generate_button)
        lay.addWidget(self.progress)
        dock = QDockWidget("Generate", self)
        dock.setObjectName("dock_generate")
        dock.setWidget(side)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)

    def _build_gallery(self) -> None:
        self.gallery = Gallery()
        self.gallery.setObjectName("gallery")
        self.gallery.entry_activated.connect(self.show_entry)
        self.gallery.restore_requested.connect(lambda e: self.restore(e.provenance, e.path))
        self.gallery.trash_requested.connect(self.trash_entry)
        dock = QDockWidget("History", self)
        dock.setObjectName("dock_history")
        dock.setWidget(self.gallery)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.history_dock = dock

    def _build_messages(self) -> None:
        self.messages = QListWidget()
        self.messages.setObjectName("messages")
        dock = QDockWidget("Messages", self)
        dock.setObjectName("dock_messages")
        dock.setWidget(self.messages)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        dock.hide()  # shown by the first warning; View → Messages shows it any time
        self.messages_dock = dock

    def _build_status(self) -> None:
        self.provider_label = QLabel("provider: –")
        self.provider_label.setObjectName("provider")
        self.provider_label.setToolTip("The ONNX Runtime execution provider really in use")
        self.statusBar().addPermanentWidget(self.provider_label)

    def _build_menus(self) -> None:
        file = self.menuBar().addMenu("&File")
        self._action(file, "&Open output…", QKeySequence.StandardKey.Open, self.open_output_dialog)
        self._action(file, "&Save result as…", QKeySequence.StandardKey.Save, self.save_current)
        self._action(file, "Show the &history folder", None, self.open_history_folder)
        file.addSeparator()
        # Spelled out: the standard Quit key is empty on some platforms (offscreen, Windows).
        self._action(file, "&Quit", QKeySequence("Ctrl+Q"), self.close)
        run = self.menuBar().addMenu("&Run")
        self._action(run, "&Generate", QKeySequence("Ctrl+Return"), self.generate)
        self.addAction(self._action(None, "Generate", QKeySequence("Ctrl+Enter"), self.generate))
        self._action(run, "&Cancel", QKeySequence("Esc"), self.cancel)
        view = self.menuBar().addMenu("&View")
        for dock in self.findChildren(QDockWidget):
            view.addAction(dock.toggleViewAction())
        plugins = self.menuBar().addMenu("&Plugins")
        self._action(plugins, "&Plugins…", None, self.show_plugins_dialog)
        settings = self.menuBar().addMenu("&Settings")
        self._action(settings, "Choose &SoundFont…", None, self.choose_soundfont_dialog)
        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "&Keyboard shortcuts", QKeySequence("F1"), self.show_shortcuts)
        self._action(help_menu, "&About GDL Studio", None, self._about)

    def _action(self, menu: Any, text: str, key: Any, slot: Any) -> QAction:
        action = QAction(text, self)
        if key is not None:
            action.setShortcut(key)
        action.triggered.connect(lambda *_: slot())
        if menu is not None:
            menu.addAction(action)
        return action

    def _connect_runner(self) -> None:
        self.runner.progress.connect(self._on_progress)
        self.runner.preview.connect(lambda _: self._on_preview())
        self.runner.notice.connect(self.notify)
        self.runner.finished.connect(self._on_finished)
        self.runner.failed.connect(self._on_failed)
        self.runner.cancelled.connect(self._on_cancelled)
        self.runner.running_changed.connect(self._on_running)

    # -- plugins ------------------------------------------------------------------------------
    def refresh_plugins(self) -> None:
        keep = self._plugin.id if self._plugin else self.studio.settings.get("last_plugin")
        self.plugin_list.blockSignals(True)
        self.plugin_list.clear()
        for rec in self.studio.registry:
            if rec.disabled:
                continue
            item = QListWidgetItem(kind_icon(rec.manifest.kind if rec.manifest else None), rec.name)
            item.setData(ID_ROLE, rec.id)
            if not rec.ok:
                item.setForeground(Qt.GlobalColor.gray)
                item.setToolTip(rec.state)
            else:
                item.setToolTip(rec.manifest.description if rec.manifest else "")
            self.plugin_list.addItem(item)
        self.plugin_list.blockSignals(False)
        rows = min(max(self.plugin_list.count(), 1), 8)
        self.plugin_list.setMaximumHeight(rows * self.plugin_list.sizeHintForRow(0) + 8)
        if self.plugin_list.count() == 0:
            self.description.setText(
                "No plugins found. Built-in plugins live in plugins/; add your own in "
                f"{self.studio.paths.user_plugins} (see the README's CONTRIBUTING section)."
            )
            self._plugin = None
            return
        self.select_plugin(keep) or self.plugin_list.setCurrentRow(0)

    def select_plugin(self, plugin_id: str | None) -> bool:
        for i in range(self.plugin_list.count()):
            if self.plugin_list.item(i).data(ID_ROLE) == plugin_id:
                self.plugin_list.setCurrentRow(i)
                return True
        return False

    def _plugin_selected(self, item: QListWidgetItem | None, _prev: Any = None) -> None:
        self._remember_params()
        # Empty the panel before the new plugin's specs are built: what it shows belongs to
        # the plugin just left, and a parameter of the same name (length, temperature,
        # seed) must not carry over — a text plugin's 400 characters are not 400 bars.
        self.panel.set_specs(())
        if item is None:
            return
        rec = self.studio.registry.get(item.data(ID_ROLE))
        self._plugin = rec
        self.studio.settings.put("last_plugin", rec.id)
        m = rec.manifest
        self.generate_button.setEnabled(rec.ok)
        self.description.setText(m.description if rec.ok and m else f"⚠ {rec.state}")
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for model in m.models if m else ():
            self.model_combo.addItem(model.name, model.id)
        last_model = self.studio.settings.get("last_model", {}).get(rec.id)
        default = m.model(None) if m else None
        idx = self.model_combo.findData(last_model or (default.id if default else None))
        self.model_combo.setCurrentIndex(max(idx, 0))
        self.model_combo.setVisible(self.model_combo.count() > 0)
        self.model_combo.blockSignals(False)
        self._apply_model_specs()
        self.panel.set_values(self.studio.settings.last_params(rec.id))
        if m:
            self.canvases.setCurrentWidget(self.canvas_for[m.kind])
        self._show_provider()

    def _apply_model_specs(self) -> None:
        """Rebuild the panel for the chosen model (its classes fill a `choices_from` choice)."""
        m = self._plugin.manifest if self._plugin else None
        if m is None:
            self.panel.set_specs(())
            return
        model = m.model(self.model_combo.currentData()) if m.models else None
        keep = self.panel.values() if self.panel.specs else {}
        if self._plugin is not None and self.panel.specs:
            # Settings that only some models have (for_kinds) are remembered while another
            # model is chosen, so switching back finds them as they were.
            keep = {**self.studio.settings.last_params(self._plugin.id), **keep}
            self.studio.settings.set_last_params(self._plugin.id, keep)
        self.panel.set_specs(specs_for_model(m.params, model))
        self.panel.set_values(keep)
        # Once the new editors are shown: a layout leaves out children not yet shown.
        QTimer.singleShot(0, self._fit_panel)

    def _fit_panel(self) -> None:
        """Make the parameter panel's scroll area at least as wide as the panel needs (its
        labels, the seed's ten digits, the sliders' value labels), with room for the
        vertical scroll bar.  It never narrows again: the dock keeps the width of the widest
        panel shown, rather than jumping at every change of plugin."""
        scroll = self.panel_scroll
        needed = (
            self.panel.minimumSizeHint().width()
            + scroll.verticalScrollBar().sizeHint().width()
            + 2 * scroll.frameWidth()
        )
        scroll.setMinimumWidth(max(needed, scroll.minimumWidth()))

    def _model_changed(self) -> None:
        if self._plugin is not None and self.panel.specs:
            self._apply_model_specs()
        if self._plugin is not None and self.model_combo.currentData():
            models = dict(self.studio.settings.get("last_model", {}))
            models[self._plugin.id] = self.model_combo.currentData()
            self.studio.settings.put("last_model", models)

    def _remember_params(self) -> None:
        if self._plugin is not None and self._plugin.ok:
            stored = self.studio.settings.last_params(self._plugin.id)  # incl. other models'
            self.studio.settings.set_last_params(self._plugin.id, {**stored, **self.panel.values()})

    def show_plugins_dialog(self) -> PluginsDialog:
        dialog = PluginsDialog(self.studio.registry, self)
        dialog.enabled_changed.connect(self._set_plugin_enabled)
        dialog.show()
        return dialog

    def _set_plugin_enabled(self, plugin_id: str, enabled: bool) -> None:
        self.studio.settings.set_plugin_disabled(plugin_id, not enabled)
        self.studio.rediscover()
        self.refresh_plugins()

    # -- running ------------------------------------------------------------------------------
    def toggle_generate(self) -> None:
        self.cancel() if self.runner.running else self.generate()

    def generate(self) -> bool:
        """Validate the panel and start a job; a bad value is reported and nothing runs."""
        if self._plugin is None or not self._plugin.ok or self.runner.running:
            return False
        params = self.panel.values_for_run()
        try:
            job = prepare_job(self.studio, self._plugin.id, model_id=self.model_combo.currentData(),
                              params=params)  # fmt: skip
        except JobError as exc:
            self.notify(str(exc), error=True)
            return False
        self._remember_params()
        self._fresh_canvas = True
        kind = self._plugin.manifest.kind if self._plugin.manifest else "image"
        self.canvases.setCurrentWidget(self.canvas_for[kind])
        self.runner.start(job)
        return True

    def cancel(self) -> None:
        if self.runner.running:
            self.runner.cancel()
            self.progress.setFormat("cancelling…")

    def _on_running(self, running: bool) -> None:
        self.generate_button.setText("Cancel  (Esc)" if running else "Generate  (Ctrl+Enter)")
        self.model_combo.setEnabled(not running)
        self.plugin_list.setEnabled(not running)
        if running:
            self.progress.setValue(0)
            self.progress.setFormat("starting…")

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.progress.setFormat(f"{fraction:.0%}  {message}" if message else f"{fraction:.0%}")

    def _on_preview(self) -> None:
        preview = self.runner.take_preview()
        if not isinstance(preview, Preview):
            return
        if preview.kind == "image" and preview.images:
            self.image_canvas.show_preview(preview.images)
        elif preview.kind == "text":
            if self._fresh_canvas:
                self.text_canvas.clear()
            self.text_canvas.append_text(preview.text, preview.probs)
        elif preview.kind == "midi" and preview.notes:
            self._keep_drawn_melody()
            self.piano_roll.set_notes(preview.notes)
        self._fresh_canvas = False

    def _on_finished(self, done: Finished) -> None:
        outcome = done.outcome
        path = done.entry.path if done.entry else None
        self.show_result(outcome.result, outcome.provenance, path)
        if done.entry is not None:
            self.gallery.add_entry(done.entry)
            self.gallery.setCurrentRow(0)
        if done.save_error:
            self.notify(done.save_error + " Use File → Save result as… to keep it.", error=True)
        self.progress.setFormat("done")
        self._provider_by_plugin[outcome.provenance.plugin] = outcome.provenance.provider
        self._show_provider()
        seed = f", seed {outcome.provenance.seed}" if outcome.provenance.seed is not None else ""
        self.statusBar().showMessage(f"{outcome.provenance.plugin}: done{seed}", 5000)

    def _on_failed(self, message: str) -> None:
        self.progress.setFormat("failed")
        self.notify(message, error=True)
        self.refresh_plugin_state()

    def _on_cancelled(self) -> None:
        self.progress.setFormat("cancelled")
        self.statusBar().showMessage("Cancelled", 3000)

    def refresh_plugin_state(self) -> None:
        """A plugin that failed to import is greyed out with its error, others unaffected."""
        for i in range(self.plugin_list.count()):
            item = self.plugin_list.item(i)
            rec = self.studio.registry.get(item.data(ID_ROLE))
            if not rec.ok:
                item.setForeground(Qt.GlobalColor.gray)
                item.setToolTip(rec.state)
                if rec is self._plugin:
                    self.generate_button.setEnabled(False)
                    self.description.setText(f"⚠ {rec.state}")

    # -- results ------------------------------------------------------------------------------
    def show_result(self, result: Result, prov: Provenance, path: Path | None) -> None:
        self.current = (result, prov, path)
        self.canvas_hint.hide()
        if result.kind == "image":
            if "display_smooth" in prov.extra:  # a plugin's hint for its small images
                self.image_canvas.set_smooth(bool(prov.extra["display_smooth"]))
            self.image_canvas.set_images(result.images, result.columns)
            cells = len(result.images)
            self.cell_actions = cell_actions(prov.extra, cells)
            quiz = Quiz.from_extra(prov.extra, cells)
            self.image_canvas.set_quiz(quiz)
            self._quiz_changed()
        elif result.kind == "text":
            self.text_canvas.set_text(result.text, result.probs)
            self.cell_actions = cell_actions(prov.extra, 1)  # a text result is one cell
        else:
            self._keep_drawn_melody()
            self.piano_roll.set_midi(result.midi)
            self.cell_actions = []
        plugin_canvas = self.plugin_canvases.show(result, prov)
        self.canvases.setCurrentWidget(plugin_canvas or self.canvas_for[result.kind])

    def gallery_add(self, entry: HistoryEntry) -> None:
        """Show a result kept by a plugin's canvas at the top of the history."""
        self.gallery.add_entry(entry)
        self.statusBar().showMessage(f"Kept {entry.path.name}", 4000)

    # -- what a plugin lets the user do with one cell ----------------------------------------
    def _add_cell_actions(self, menu: Any, index: int) -> None:
        if not self.cell_actions:
            return
        menu.addSeparator()
        for i, action in enumerate(self.cell_actions):
            double_click = i == 0 and self.current is not None and self.current[0].kind == "image"
            item = menu.addAction(action.label + ("  (double-click)" if double_click else ""))
            item.triggered.connect(lambda *_, a=action: self.apply_cell_action(a, index))

    def _cell_activated(self, index: int) -> None:
        if self.cell_actions:
            self.apply_cell_action(self.cell_actions[0], index)

    def apply_cell_action(self, action: CellAction, index: int) -> bool:
        """Put the action's parameters for cell ``index`` into the panel (its seeds locked: the
        user picked them) and run when the action says so."""
        text = None
        if self.current is not None and self.current[0].kind == "text":
            text = self.text_canvas.text()  # the text as it is on the canvas
        quiz = self.image_canvas.quiz()  # an action may take the user's marks
        params = action.params_for(index, text, quiz.marks if quiz is not None else None)
        if params is None or self.current is None:
            return False
        prov = self.current[1]
        mine = self._plugin is not None and self._plugin.id == prov.plugin
        if not mine and not self.select_plugin(prov.plugin):
            return False
        self.panel.set_values(params)
        for name, editor in self.panel.editors.items():
            if hasattr(editor, "lock") and name in params:
                editor.lock.setChecked(True)
        self.statusBar().showMessage(f"{action.label}: settings of image {index + 1}", 5000)
        return self.generate() if action.run else True

    def _quiz_changed(self) -> None:
        quiz = self.image_canvas.quiz()
        if quiz is None:
            self.canvas_hint.hide()
            return
        if quiz.revealed:
            self.canvas_hint.setText(f"<b>{quiz.summary()}</b>")
        elif quiz.open:  # a marking: the marks are for an action, nothing to reveal
            self.canvas_hint.setText(f"{quiz.prompt} — {quiz.summary()}. Click (or Space) to mark.")
        else:
            self.canvas_hint.setText(
                f"{quiz.prompt} — {len(quiz.marks)} marked. Click (or Space) to mark, "
                "Enter to see the answer."
            )
        self.canvas_hint.show()

    def show_entry(self, entry: HistoryEntry) -> None:
        try:
            result = load_result(entry.path)
        except (OSError, ValueError) as exc:
            self.notify(f"{entry.path.name}: cannot be opened ({exc})", error=True)
            return
        self.show_result(result, entry.provenance, entry.path)

    def trash_entry(self, entry: HistoryEntry) -> bool:
        """History → Move to trash: the entry's files go to the system's trash (from where
        they can be restored) and leave the gallery; the canvas keeps showing the result, so
        it can still be saved elsewhere."""
        try:
            self.studio.history.trash(entry)
        except OSError as exc:
            self.notify(f"Could not move {entry.path.name} to the trash ({exc}); it is still "
                        "in the history.", error=True)  # fmt: skip
            return False
        self.gallery.remove_entry(entry)
        self.statusBar().showMessage(f"Moved {entry.path.name} to the trash", 5000)
        return True

    def save_current(self, index: int | None = None) -> Path | None:
        if self.current is None:
            self.notify("Nothing to save yet.")
            return None
        result, prov, _ = self.current
        ext = EXTENSIONS[result.kind]
        # File → Save writes the whole grid (or, as .gif, the batch as an animation); the
        # canvas's menu saves one cell.
        name = f"{prov.plugin}-{prov.seed if prov.seed is not None else 'result'}{ext}"
        filters = f"*{ext}"
        if result.kind == "image" and len(result.images) > 1 and index is None:
            filters = "PNG grid (*.png);;Animated GIF (*.gif)"
        path_str, chosen = QFileDialog.getSaveFileName(self, "Save result", name, filters)
        if not path_str:
            return None
        path = Path(path_str)
        allowed = (ext, *ALSO_ACCEPTED.get(result.kind, ()))
        if path.suffix.lower() not in allowed:
            path = path.with_suffix(".gif" if "gif" in chosen.lower() else ext)
        try:
            save_result(result, prov, path, index=index)
        except (OSError, ValueError) as exc:  # a full disk, or values a format cannot hold
            self.notify(f"Could not save {path.name}: {exc}. Nothing was overwritten.", error=True)
            return None
        self.piano_roll.mark_saved()
        self.statusBar().showMessage(f"Saved {path}", 5000)
        return path

    def export_roll(self) -> Path | None:
        """Export .mid: the result as generated, or the notes as drawn when they were edited."""
        if not self.piano_roll.edited:
            return self.save_current()
        path_str, _ = QFileDialog.getSaveFileName(self, "Save notes", "notes.mid", "*.mid")
        if not path_str:
            return None
        path = Path(path_str).with_suffix(".mid")
        return self._write_drawn(path)

    def export_audio(self, path: Path | None = None) -> Path | None:
        """Render what the piano roll plays through the SoundFont to a .wav file (``path``:
        skip the file dialog), with a progress dialog that can cancel; nothing is written
        unless the whole render succeeds."""
        midi = self.piano_roll.audible_midi()
        if midi is None:
            self.notify("Nothing to export yet.")
            return None
        soundfont = choose_soundfont(self.studio.settings.get("soundfont"))
        if soundfont is None:
            self.notify(f"Export audio: {HOW_TO_ADD_SOUNDFONT}", error=True)
            return None
        if path is None:
            name = "notes.wav"
            if self.current is not None and not self.piano_roll.edited:
                prov = self.current[1]
                name = f"{prov.plugin}-{prov.seed if prov.seed is not None else 'result'}.wav"
            path_str, _ = QFileDialog.getSaveFileName(self, "Export audio", name, "*.wav")
            if not path_str:
                return None
            path = Path(path_str).with_suffix(".wav")
        dialog = QProgressDialog("Rendering through the SoundFont…", "Cancel", 0, 1000, self)
        dialog.setWindowTitle("Export audio")
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(300)

        def cancelled() -> bool:  # polled between chunks: keeps the window responsive
            QApplication.processEvents()
            return dialog.wasCanceled()

        try:
            frames = render_midi(
                midi,
                soundfont,
                AUDIO_RATE,
                should_stop=cancelled,
                progress=lambda done: dialog.setValue(round(done * 1000)),
            )
            data = wav_bytes(frames, AUDIO_RATE)
            atomic_write(path, lambda fh: fh.write(data))
        except RenderCancelled:
            self.notify("Audio export cancelled; nothing was written.")
            return None
        except SoundFontError as exc:
            self.notify(str(exc), error=True)
            return None
        except OSError as exc:
            self.notify(f"Could not save {path.name}: {exc}. Nothing was overwritten.", error=True)
            return None
        finally:
            dialog.close()
        self.statusBar().showMessage(f"Saved {path}", 5000)
        return path

    def use_drawn_notes(self) -> str:
        """The piano roll's notes become the current plugin's MIDI input (saved first under
        <data>/melodies, so a drawn melody outlives the window)."""
        path = self._save_melody()
        return "refused" if path is None else self.open_file(path)

    def _keep_drawn_melody(self) -> None:
        """Before new notes replace a melody drawn on the piano roll and not saved, it is
        saved under <data>/melodies: a result arriving does not lose what the user drew."""
        if self.piano_roll.unsaved and (path := self._save_melody()) is not None:
            self.notify(f"The melody you drew was kept as {path}")

    def _save_melody(self) -> Path | None:
        folder = self.studio.paths.data / "melodies"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.notify(f"Could not create {folder}: {exc}", error=True)
            return None
        return self._write_drawn(unused_path(folder, time.strftime("melody-%Y%m%d-%H%M%S"), ".mid"))

    def _write_drawn(self, path: Path) -> Path | None:
        midi = self.piano_roll.drawn_midi()
        try:
            atomic_write(path, lambda f: midi.save(file=f))
        except (OSError, ValueError) as exc:
            self.notify(f"Could not save {path.name}: {exc}. Nothing was overwritten.", error=True)
            return None
        self.piano_roll.mark_saved()
        self.statusBar().showMessage(f"Saved {path}", 5000)
        return path

    def _load_history(self) -> None:
        entries = self.studio.history.entries(limit=HISTORY_SHOWN)
        self.gallery.set_entries(entries)
        if entries:
            self.show_entry(entries[-1])
            self.gallery.setCurrentRow(0)

    # -- drag and drop, opening outputs ------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.open_file(Path(url.toLocalFile()))
        event.acceptProposedAction()

    def open_output_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a GDL Studio output or an input file", "",
            "Outputs and inputs (*.png *.jpg *.jpeg *.webp *.mid *.midi *.txt)")  # fmt: skip
        if path:
            self.open_file(Path(path))

    def open_file(self, path: Path) -> str:
        """A GDL Studio output restores its plugin, model and parameters; another image or MIDI
        file fills the current plugin's matching input.  Returns what was done."""
        try:
            prov = read_provenance(path)
        except (OSError, ValueError):
            prov = None
        if prov is not None:
            return self.restore(prov, path)
        suffix = path.suffix.lower()
        kind = "image" if suffix in IMAGE_SUFFIXES else "midi" if suffix in MIDI_SUFFIXES else None
        if kind is None or self._plugin is None:
            self.notify(f"{path.name}: not a GDL Studio output, image or MIDI file", error=True)
            return "refused"
        name = self.panel.fill_file(path, kind)
        if name is None:
            self.notify(f"{self._plugin.name} takes no {kind} input", error=True)
            return "refused"
        self.statusBar().showMessage(f"{path.name} → {name}", 4000)
        return f"filled {name}"

    def restore(self, prov: Provenance, path: Path | None = None) -> str:
        if not self.select_plugin(prov.plugin):
            self.notify(f"{prov.plugin}: this plugin is not installed or is disabled", error=True)
            return "refused"
        idx = self.model_combo.findData(prov.model)
        if idx >= 0:
            self.model_combo.setCurrentIndex(idx)
        elif prov.model:
            self.notify(
                f"model {prov.model!r} is not available; using {self.model_combo.currentText()}"
            )
        self.panel.set_values(prov.params)
        for name, editor in self.panel.editors.items():
            if hasattr(editor, "lock") and name in prov.params:
                editor.lock.setChecked(True)  # a restored seed stays: the user asked for it
        if path is not None:
            with contextlib.suppress(OSError, ValueError):
                self.show_result(load_result(path), prov, path)
        self.statusBar().showMessage(f"Restored the settings of {prov.plugin}", 5000)
        return "restored"

    # -- settings, messages ------------------------------------------------------------------
    def choose_soundfont_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a SoundFont", "", "SoundFonts (*.sf2)")
        if path:
            self.studio.settings.put("soundfont", path)
            self.piano_roll.set_soundfont(Path(path))

    def notify(self, message: str, error: bool = False) -> None:
        item = QListWidgetItem(("⚠ " if error else "ℹ ") + message)
        if error:
            item.setForeground(Qt.GlobalColor.red)
            self.messages_dock.show()
        self.messages.addItem(item)
        self.messages.scrollToBottom()
        self.statusBar().showMessage(message, 8000)
        (log.warning if error else log.info)("%s", message)

    def _show_planned_provider(self) -> None:
        try:
            choice = self.studio.factory.choice()
        except Exception as exc:  # onnxruntime missing or broken: say so, keep the window
            self.provider_label.setText("provider: ONNX Runtime unavailable")
            self.notify(f"ONNX Runtime could not be loaded: {exc}", error=True)
            return
        from gdl_studio.core.runtime import explain_fallback

        self._planned_provider = explain_fallback(
            choice.requested, choice.requested[:1], choice.reason
        )
        self._show_provider()

    def _show_provider(self) -> None:
        """The provider that really ran the selected plugin's last job, else the planned one."""
        ran = self._provider_by_plugin.get(self._plugin.id) if self._plugin else None
        self.provider_label.setText(f"provider: {ran or self._planned_provider}")

    def show_shortcuts(self) -> ShortcutsDialog:
        dialog = ShortcutsDialog(self)
        dialog.show()
        return dialog

    def open_history_folder(self) -> bool:
        """Show the folder every result is saved in, in the system's file manager."""
        folder = self.studio.paths.history
        folder.mkdir(parents=True, exist_ok=True)
        if QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            return True
        self.notify(f"could not open a file manager; the history folder is {folder}", error=True)
        return False

    def _about(self) -> None:
        sf = choose_soundfont(self.studio.settings.get("soundfont"))
        QMessageBox.about(self, "About GDL Studio",
                          f"GDL Studio {__version__}\nHistory: {self.studio.paths.history}\n"
                          f"SoundFont: {sf or HOW_TO_ADD_SOUNDFONT}")  # fmt: skip

    def _restore_window(self) -> None:
        win = self.studio.settings.get("window", {})
        if win.get("geometry"):
            self.restoreGeometry(QByteArray.fromBase64(win["geometry"].encode()))
        if win.get("state"):
            self.restoreState(QByteArray.fromBase64(win["state"].encode()))

    def closeEvent(self, event: QCloseEvent) -> None:
        self._remember_params()
        self.studio.settings.put("window", {
            "geometry": bytes(self.saveGeometry().toBase64().data()).decode(),
            "state": bytes(self.saveState().toBase64().data()).decode(),
        })  # fmt: skip
        if self.runner.running:
            self.runner.cancel()
            self.runner.wait(5.0)
        self.piano_roll.stop() if hasattr(self.piano_roll, "stop") else None
        super().closeEvent(event)
