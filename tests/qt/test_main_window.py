"""The studio window driven through its widgets, offscreen, with the fixture plugins."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from gdl_studio.core.host import Studio
from gdl_studio.core.results import read_provenance
from gdl_studio.core.soundfont import choose_soundfont
from gdl_studio.qt.main_window import MainWindow
from gdl_studio.qt.param_panel import SeedEditor


def reopen(qtbot, plugin_root: Path) -> MainWindow:
    """A new window over the same home folder: what a restart of the app sees."""
    studio = Studio.create(include_builtin=False, include_entry_points=False,
                           extra_folders=[plugin_root])  # fmt: skip
    win = MainWindow(studio)
    qtbot.addWidget(win)
    return win


def generate(qtbot, win: MainWindow, timeout: int = 10_000) -> None:
    with qtbot.waitSignal(win.runner.running_changed, timeout=timeout,
                          check_params_cb=lambda running: not running):  # fmt: skip
        qtbot.mouseClick(win.generate_button, Qt.MouseButton.LeftButton)


def test_the_progress_bar_says_ready_before_the_first_run(window: MainWindow) -> None:
    assert window.progress.text() == "ready"


def test_plugin_list_shows_usable_plugins_and_hides_disabled(window: MainWindow) -> None:
    ids = [window.plugin_list.item(i).data(Qt.ItemDataRole.UserRole)
           for i in range(window.plugin_list.count())]  # fmt: skip
    assert {"tinygen", "echo", "scale", "broken", "badmanifest"} <= set(ids)
    assert "offplugin" not in ids


def test_generate_through_the_panel_saves_and_shows_the_result(qtbot, window: MainWindow) -> None:
    assert window.select_plugin("tinygen")
    panel = window.panel
    panel.set_value("batch", 4)
    seed_editor = panel.editors["seed"]
    assert isinstance(seed_editor, SeedEditor)
    seed_editor.set_value(1234)
    seed_editor.lock.setChecked(True)
    generate(qtbot, window)
    result, prov, path = window.current
    assert prov.seed == 1234 and prov.params["batch"] == 4
    assert path is not None and path.exists()
    assert read_provenance(path).params == prov.params  # on disk, with provenance
    assert window.image_canvas.image_count() == 4
    assert window.gallery.count() == 1
    assert "CPU" in window.provider_label.text()
    # Same locked seed -> the same pixels.
    first = np.asarray(result.images[0])
    generate(qtbot, window)
    assert np.array_equal(np.asarray(window.current[0].images[0]), first)


def test_unlocked_seed_is_rerolled_and_recorded(qtbot, window: MainWindow) -> None:
    window.select_plugin("tinygen")
    window.panel.editors["seed"].set_value(5)
    generate(qtbot, window)
    seed = window.current[1].seed
    assert window.panel.editors["seed"].value() == seed  # the seed used is shown


def test_bad_parameter_value_is_reported_and_nothing_runs(qtbot, window: MainWindow) -> None:
    window.select_plugin("tinygen")
    window.panel.set_value("source", "/no/such/image.png")
    assert window.generate() is False
    assert not window.runner.running
    assert "no such file" in window.messages.item(window.messages.count() - 1).text()
    assert window.studio.history.entries() == []


def test_cancel_mid_run(qtbot, window: MainWindow) -> None:
    window.select_plugin("tinygen")
    window.panel.set_values({"steps": 200, "delay": 0.05})
    previews = []
    window.runner.preview.connect(lambda _: previews.append(1))
    assert window.generate()
    assert window.generate_button.text().startswith("Cancel")
    qtbot.waitUntil(lambda: len(previews) >= 2, timeout=5000)
    with qtbot.waitSignal(window.runner.cancelled, timeout=5000):
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not window.runner.running, timeout=5000)
    assert window.generate_button.text().startswith("Generate")
    assert window.studio.history.entries() == []  # nothing half-made was saved
    assert window.progress.format() == "cancelled"


def test_live_previews_reach_the_canvas(qtbot, window: MainWindow) -> None:
    window.select_plugin("tinygen")
    window.panel.set_values({"steps": 30, "delay": 0.02})
    seen = []
    original = window.image_canvas.show_preview
    window.image_canvas.show_preview = lambda imgs: (seen.append(len(imgs)), original(imgs))
    generate(qtbot, window)
    assert seen, "no preview was shown while generating"


def test_streaming_text_and_midi_results(qtbot, window: MainWindow) -> None:
    window.select_plugin("echo")
    window.panel.set_values({"prompt": "la", "repeat": 4})
    generate(qtbot, window)
    assert window.text_canvas.text() == "la la la la "
    assert window.canvases.currentWidget() is window.text_canvas
    window.select_plugin("scale")
    generate(qtbot, window)
    assert len(window.piano_roll.notes()) == 8
    assert window.current[2].suffix == ".mid"


@pytest.mark.skipif(choose_soundfont(None) is None, reason="no SoundFont installed")
def test_export_audio_renders_what_plays_to_a_wav_file(
    qtbot, window: MainWindow, tmp_path: Path, monkeypatch
) -> None:
    window.select_plugin("scale")
    generate(qtbot, window)
    out = tmp_path / "scale.wav"
    assert window.export_audio(out) == out
    with wave.open(str(out), "rb") as w:
        seconds = w.getnframes() / w.getframerate()
        assert w.getnchannels() == 2 and w.getsampwidth() == 2
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    end = max(n.end for n in window.piano_roll.notes())
    assert seconds == pytest.approx(end + 1.0, abs=0.05)  # the piece and a second of release
    assert np.abs(pcm).max() > 300  # not silence
    # Cancelled half-way: nothing is written, and an older file of that name is untouched.
    monkeypatch.setattr("gdl_studio.qt.main_window.QProgressDialog.wasCanceled", lambda _: True)
    before = out.read_bytes()
    assert window.export_audio(out) is None
    assert out.read_bytes() == before
    assert "cancelled" in window.messages.item(window.messages.count() - 1).text()


def test_export_audio_without_a_soundfont_says_how_to_add_one(
    qtbot, window: MainWindow, tmp_path: Path, monkeypatch
) -> None:
    window.select_plugin("scale")
    generate(qtbot, window)
    monkeypatch.setattr("gdl_studio.qt.main_window.choose_soundfont", lambda _: None)
    assert window.export_audio(tmp_path / "x.wav") is None
    assert not (tmp_path / "x.wav").exists()
    assert "SoundFont" in window.messages.item(window.messages.count() - 1).text()


def test_history_entries_go_to_the_trash_or_give_back_their_settings(
    qtbot, window: MainWindow, monkeypatch
) -> None:
    moved: list[str] = []
    monkeypatch.setattr("send2trash.send2trash", moved.append)  # never the user's own trash
    window.select_plugin("tinygen")
    window.panel.set_values({"batch": 3})
    generate(qtbot, window)
    window.panel.set_values({"batch": 5})
    generate(qtbot, window)
    newest, older = window.gallery.entry_at(0), window.gallery.entry_at(1)
    assert newest.provenance.params["batch"] == 5
    # Right-click → Use its settings: the older run's batch is back in the panel.
    menu = window.gallery.menu_for(older)
    assert [a.text() for a in menu.actions() if a.text()] == [
        "Show", "Use its settings", "Move to trash"]  # fmt: skip
    window.select_plugin("echo")
    menu.actions()[1].trigger()
    assert window._plugin.id == "tinygen" and window.panel.value("batch") == 3
    # Del on the selected entry: its file goes to the trash, the entry leaves the gallery,
    # the canvas keeps what it shows.
    window.gallery.setCurrentRow(0)
    qtbot.keyClick(window.gallery, Qt.Key.Key_Delete)
    assert moved == [str(newest.path)]
    assert window.gallery.count() == 1 and window.gallery.entry_at(0).path == older.path
    assert window.current is not None


def test_a_trash_that_fails_keeps_the_entry_and_says_why(
    qtbot, window: MainWindow, monkeypatch
) -> None:
    def refuse(path: str) -> None:
        raise PermissionError("no trash can here")

    monkeypatch.setattr("send2trash.send2trash", refuse)
    window.select_plugin("tinygen")
    generate(qtbot, window)
    entry = window.gallery.entry_at(0)
    assert not window.trash_entry(entry)
    assert window.gallery.entry_at(0).path == entry.path and entry.path.is_file()
    assert "no trash can here" in window.messages.item(window.messages.count() - 1).text()


def test_plugin_that_fails_to_import_is_reported_and_others_work(qtbot, window: MainWindow) -> None:
    window.select_plugin("broken")
    with qtbot.waitSignal(window.runner.failed, timeout=5000) as blocker:
        window.generate()
    assert "a_module_that_does_not_exist" in blocker.args[0]
    qtbot.waitUntil(lambda: not window.runner.running)
    assert not window.generate_button.isEnabled()
    window.select_plugin("tinygen")
    assert window.generate_button.isEnabled()
    generate(qtbot, window)
    assert window.current[1].plugin == "tinygen"


def drop(window: MainWindow, path: Path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)  # fmt: skip
    window.dropEvent(event)


def test_dropping_a_saved_output_restores_plugin_model_and_parameters(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:
    window.select_plugin("tinygen")
    window.panel.set_values({"batch": 3, "steps": 2, "style": "fancy", "crisp": False})
    window.panel.editors["seed"].set_value(77)
    window.panel.editors["seed"].lock.setChecked(True)
    generate(qtbot, window)
    saved = window.current[2]
    made_with = dict(window.current[1].params)
    window.select_plugin("echo")
    window.panel.set_values({"prompt": "changed"})
    drop(window, saved)
    assert window._plugin.id == "tinygen"
    assert window.model_combo.currentData() == "tiny"
    restored = window.panel.values()
    assert {k: restored[k] for k in made_with} == made_with


def test_dropping_an_image_fills_the_image_input(qtbot, window: MainWindow, tmp_path: Path) -> None:
    window.select_plugin("tinygen")
    photo = tmp_path / "photo.png"
    Image.new("RGB", (16, 16), "red").save(photo)
    drop(window, photo)
    assert window.panel.value("source") == str(photo)


def test_history_survives_a_restart(qtbot, window: MainWindow, plugin_root: Path) -> None:
    window.select_plugin("tinygen")
    generate(qtbot, window)
    window.select_plugin("echo")
    generate(qtbot, window)
    made = [e.path for e in window.gallery.entries()]
    window.close()
    again = reopen(qtbot, plugin_root)
    assert [e.path for e in again.gallery.entries()] == made
    assert again.current is not None and again.current[2] == made[0]  # the newest is shown
    assert again._plugin.id == "echo"  # last plugin and its parameters come back too


def test_parameters_persist_per_plugin(qtbot, window: MainWindow, plugin_root: Path) -> None:
    window.select_plugin("tinygen")
    window.panel.set_values({"batch": 7, "style": "fancy"})
    window.select_plugin("echo")  # switching remembers the values
    window.close()
    again = reopen(qtbot, plugin_root)
    again.select_plugin("tinygen")
    assert again.panel.value("batch") == 7 and again.panel.value("style") == "fancy"


def test_switching_plugins_carries_no_values_across(qtbot, window: MainWindow) -> None:
    # Both plugins have a "seed": tinygen's must not become echo's, and echo's remembered
    # parameters must not take in tinygen's.
    window.select_plugin("echo")
    window.panel.set_values({"seed": 5, "repeat": 2})
    window.select_plugin("tinygen")
    window.panel.set_values({"seed": 12345, "batch": 7})
    window.select_plugin("echo")
    assert window.panel.value("seed") == 5 and window.panel.value("repeat") == 2
    stored = window.studio.settings.last_params("echo")
    assert stored == {"prompt": "hello", "repeat": 2, "seed": 5}
    window.select_plugin("tinygen")
    assert window.panel.value("seed") == 12345 and window.panel.value("batch") == 7


def test_plugins_dialog_lists_errors_and_disables(qtbot, window: MainWindow) -> None:
    dialog = window.show_plugins_dialog()
    qtbot.addWidget(dialog)
    rows = {dialog.table.item(r, 0).text(): dialog.table.item(r, 4).text()
            for r in range(dialog.table.rowCount())}  # fmt: skip
    assert rows["Off (offplugin)"] == "disabled"
    assert any(state.startswith("bad manifest") for state in rows.values())
    for r in range(dialog.table.rowCount()):
        if dialog.table.item(r, 0).text() == "Echo text (echo)":
            dialog.table.item(r, 5).setCheckState(Qt.CheckState.Unchecked)
    ids = [window.plugin_list.item(i).data(Qt.ItemDataRole.UserRole)
           for i in range(window.plugin_list.count())]  # fmt: skip
    assert "echo" not in ids and "tinygen" in ids
    assert "echo" in window.studio.settings.disabled_plugins()


def _with_extra(window: MainWindow, **extra) -> None:
    """Show the current result again as if its plugin had put ``extra`` in it."""
    import dataclasses

    result, prov, path = window.current
    window.show_result(result, dataclasses.replace(prov, extra={**prov.extra, **extra}), path)


def test_cell_actions_appear_in_the_menu_and_fill_the_panel(qtbot, window: MainWindow) -> None:
    window.select_plugin("tinygen")
    window.panel.set_value("batch", 3)
    generate(qtbot, window)
    actions = [
        {"label": "Remake alone", "run": True,
         "params": [{"seed": 700 + i, "batch": 1} for i in range(3)]},
        {"label": "Just set", "params": [{"seed": 800 + i} for i in range(3)]},
    ]  # fmt: skip
    _with_extra(window, cell_actions=actions)
    window.image_canvas.set_selected_index(1)
    labels = [a.text() for a in window.image_canvas.context_menu().actions()]
    assert "Remake alone  (double-click)" in labels and "Just set" in labels
    assert window.apply_cell_action(window.cell_actions[1], 2)
    assert window.panel.value("seed") == 802 and window.panel.editors["seed"].lock.isChecked()
    assert not window.runner.running  # "Just set" does not run
    # Double-clicking a cell runs the first action with that cell's settings.
    with qtbot.waitSignal(window.runner.running_changed, timeout=10_000,
                          check_params_cb=lambda running: not running):  # fmt: skip
        qtbot.mouseDClick(window.image_canvas, Qt.MouseButton.LeftButton,
                          pos=window.image_canvas.cell_rect(0).center().toPoint())  # fmt: skip
    assert window.current[1].seed == 700 and window.current[1].params["batch"] == 1


def test_a_job_replaced_after_it_ended_reports_nothing(qtbot, window: MainWindow) -> None:
    """A job whose end is still on its way to the window when a new job starts is dropped:
    the window does not show its result, nor hear "not running" while the new job runs."""
    window.select_plugin("tinygen")
    seed_editor = window.panel.editors["seed"]
    assert isinstance(seed_editor, SeedEditor)
    seed_editor.lock.setChecked(True)
    shown: list[int] = []
    running: list[bool] = []
    window.runner.finished.connect(lambda done: shown.append(done.outcome.provenance.seed))
    window.runner.running_changed.connect(running.append)
    seed_editor.set_value(111)
    qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    assert window.runner.wait(10.0)  # ended, but no event handled yet: its end is queued
    seed_editor.set_value(222)
    generate(qtbot, window)
    assert shown == [222] and window.current[1].seed == 222
    assert running == [True, True, False]


def test_guessing_game_marks_cells_and_scores_the_answer(qtbot, window: MainWindow) -> None:
    window.select_plugin("tinygen")
    window.panel.set_value("batch", 4)
    generate(qtbot, window)
    quiz = {"prompt": "Which are fake?", "answer": [True, False, False, True],
            "marked_means": "generated", "unmarked_means": "real"}  # fmt: skip
    _with_extra(window, quiz=quiz)
    canvas = window.image_canvas
    assert window.canvas_hint.isVisible() and "Which are fake?" in window.canvas_hint.text()
    for i in (0, 1):
        qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton,
                         pos=canvas.cell_rect(i).center().toPoint())  # fmt: skip
    assert canvas.quiz().marks == {0, 1} and "2 marked" in window.canvas_hint.text()
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_Return)
    assert canvas.quiz().revealed
    assert "2/4 right" in window.canvas_hint.text()  # 0 right, 1 wrong, 2 right, 3 missed
    assert "found 1 of 2 generated" in window.canvas_hint.text()
    # A result without a game hides the line again.
    generate(qtbot, window)
    assert canvas.quiz() is None and not window.canvas_hint.isVisible()


def test_continue_a_text_result_from_the_canvas_menu(qtbot, window: MainWindow) -> None:
    window.select_plugin("echo")
    window.panel.set_value("repeat", 1)
    window.panel.set_value("prompt", "abc")
    generate(qtbot, window)
    actions = [{"label": "Continue this text", "params": [{"repeat": 2}],
                "text_param": "prompt", "run": True}]  # fmt: skip
    _with_extra(window, cell_actions=actions)
    menu = window.text_canvas.context_menu()
    (entry,) = [a for a in menu.actions() if a.text().startswith("Continue this text")]
    with qtbot.waitSignal(window.runner.running_changed, timeout=10_000,
                          check_params_cb=lambda running: not running):  # fmt: skip
        entry.trigger()
    # The text that was on the canvas became the prompt of the new run.
    assert window.current[1].params["prompt"] == "abc "
    assert window.text_canvas.text() == "abc  abc  "


def test_float_slider_keeps_fractions(window: MainWindow) -> None:
    # superqt's QLabeledDoubleSlider subclasses QLabeledSlider: a float must not become an int.
    window.select_plugin("tinygen")
    window.panel.set_value("delay", 0.05)
    assert window.panel.value("delay") == pytest.approx(0.05)
    assert isinstance(window.panel.value("delay"), float)
    window.panel.set_value("steps", 7)
    assert window.panel.value("steps") == 7 and isinstance(window.panel.value("steps"), int)


def test_a_models_own_settings_survive_switching_models(qtbot) -> None:
    """The style plugin's classic model has settings the others do not show (for_kinds):
    the panel shows each model its own, and switching away and back keeps their values."""
    win = MainWindow(Studio.create(include_entry_points=False))
    qtbot.addWidget(win)
    assert win.select_plugin("style")
    win.model_combo.setCurrentIndex(win.model_combo.findData("gatys-lite0"))
    assert "iterations" in win.panel.editors and "styles" not in win.panel.editors
    win.panel.set_values({"iterations": 7, "strength": 0.5})
    win.model_combo.setCurrentIndex(win.model_combo.findData("magenta-26"))
    assert "iterations" not in win.panel.editors and "styles" in win.panel.editors
    assert win.panel.values()["strength"] == 0.5  # shared by both: kept
    win.model_combo.setCurrentIndex(win.model_combo.findData("gatys-lite0"))
    assert win.panel.values()["iterations"] == 7


def test_every_built_in_panel_fits_its_dock_without_cutting_values_off(qtbot) -> None:
    """The music plugin's labels and the dream plugin's slider values were cut off at the
    dock's right edge (behind a sideways scroll bar): the dock now widens to the panel."""
    win = MainWindow(Studio.create(include_entry_points=False))
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    qtbot.waitExposed(win)
    ids = [win.plugin_list.item(i).data(Qt.ItemDataRole.UserRole)
           for i in range(win.plugin_list.count())]  # fmt: skip
    assert {"music", "dream", "text"} <= set(ids)
    for plugin in ids:
        assert win.select_plugin(plugin)
        needed = win.panel.minimumSizeHint().width()
        viewport = win.panel.parentWidget()  # the scroll area's
        qtbot.waitUntil(lambda v=viewport, n=needed: v.width() >= n, timeout=2000)
        assert win.panel.width() >= needed, plugin
