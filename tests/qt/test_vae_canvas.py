"""The VAE plugin's live latent map in the studio window (offscreen, pytest-qt): the window
loads the plugin's own canvas for its map results, the mouse decodes under the cursor, a click
keeps the image in the history; concept examples are marked on the image canvas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt

from gdl_studio.core.host import Studio
from gdl_studio.core.results import read_provenance
from gdl_studio.qt.main_window import MainWindow
from tests.fixtures.images import write_idx
from tests.fixtures.vae_plugin import make_vae_plugin
from tests.fixtures.window import generate_and_wait


@pytest.fixture
def window(qtbot, tmp_path: Path) -> MainWindow:
    make_vae_plugin(tmp_path / "plugins")
    studio = Studio.create(include_builtin=False, include_entry_points=False,
                           extra_folders=[tmp_path / "plugins"])  # fmt: skip
    win = MainWindow(studio)
    qtbot.addWidget(win)
    win.resize(1000, 700)
    win.show()
    assert win.select_plugin("vae")
    return win


def generate(qtbot, win: MainWindow, **values) -> None:
    win.panel.set_values(values)
    generate_and_wait(qtbot, win, timeout=10_000)


def cell_centre(canvas, row: int, col: int) -> QPoint:
    rect = canvas.sheet_rect()
    size = rect.width() / canvas.grid
    return QPointF(rect.x() + (col + 0.5) * size, rect.y() + (row + 0.5) * size).toPoint()


def test_map_result_shows_on_the_live_map_and_decodes_under_the_cursor(
    qtbot, window: MainWindow
) -> None:
    generate(qtbot, window, mode="map", grid=5)
    canvas = window.canvases.currentWidget()
    assert type(canvas).__name__ == "LatentMapCanvas"
    assert canvas.grid == 5 and canvas.model is not None
    result = window.current[0]
    # Hover over the centre of cell (row 1, column 3): the live image is that cell's image.
    qtbot.mouseMove(canvas, cell_centre(canvas, 1, 3))
    qtbot.waitUntil(lambda: canvas.hover_image() is not None, timeout=3000)
    shown = np.asarray(result.images[1 * 5 + 3], np.int16)
    assert np.abs(np.asarray(canvas.hover_image(), np.int16) - shown).max() <= 1
    assert 0 < canvas.last_decode_ms < 50  # the tiny model; bench measures the shipped ones
    # Moving on decodes again, between the cells too (the plane is continuous).
    before = canvas.decodes
    qtbot.mouseMove(canvas, cell_centre(canvas, 3, 0) + QPoint(7, 3))
    qtbot.waitUntil(lambda: canvas.decodes > before, timeout=3000)


def test_a_click_keeps_the_image_and_stays_on_the_map(qtbot, window: MainWindow) -> None:
    generate(qtbot, window, mode="map", grid=5)
    canvas = window.canvases.currentWidget()
    entries = window.gallery.count()
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=cell_centre(canvas, 4, 0))
    assert window.gallery.count() == entries + 1
    assert window.canvases.currentWidget() is canvas  # still exploring the map
    kept = window.studio.history.entries()[-1]
    prov = read_provenance(kept.path)
    assert prov.params["mode"] == "point" and prov.model == "map2d"
    from PIL import Image

    with Image.open(kept.path) as im:  # the cell's image (the click lands within a pixel)
        diff = np.abs(np.asarray(im, np.int16) - np.asarray(window.current[0].images[20]))
    assert diff.mean() < 1 and diff.max() <= 4


def test_encode_shows_its_point_and_morphs_use_the_image_canvas(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:
    from PIL import Image

    png = tmp_path / "in.png"
    Image.fromarray(np.full((8, 8), 90, np.uint8)).save(png)
    generate(qtbot, window, mode="encode", image=str(png), grid=6)
    canvas = window.canvases.currentWidget()
    assert type(canvas).__name__ == "LatentMapCanvas"
    assert len(canvas.marks) == 1 and len(canvas.insets) == 2
    generate(qtbot, window, mode="morph", image="", point="0, 0", point_b="1, 1", frames=4)
    assert window.canvases.currentWidget() is window.image_canvas
    assert window.image_canvas.image_count() == 4


def test_marked_examples_slide_along_their_concept(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:
    folder = tmp_path / "fm"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    window.model_combo.setCurrentIndex(window.model_combo.findData("fashion28"))
    generate(qtbot, window, mode="examples", batch=6, data=str(folder))
    canvas = window.image_canvas
    assert window.canvases.currentWidget() is canvas
    quiz = canvas.quiz()
    assert quiz is not None and quiz.open
    for i in (0, 2):
        qtbot.mouseClick(
            canvas, Qt.MouseButton.LeftButton, pos=canvas.cell_rect(i).center().toPoint()
        )
    assert quiz.marks == {0, 2} and "2 of 6 marked with" in window.canvas_hint.text()
    items = window.current[1].extra["items"]
    slide = window.cell_actions[0]
    with qtbot.waitSignal(window.runner.running_changed, timeout=10_000,
                          check_params_cb=lambda running: not running):  # fmt: skip
        assert window.apply_cell_action(slide, 4)
    prov = window.current[1]
    assert prov.params["with_items"] == f"{items[0]} {items[2]}"
    assert prov.params["point"] == f"#{items[4]}" and prov.params["mode"] == "concept"
    assert len(window.current[0].images) == prov.params["frames"]


def test_a_broken_plugin_canvas_falls_back_to_the_image_canvas(qtbot, window: MainWindow) -> None:
    folder = window.studio.registry.get("vae").folder
    (folder / "widgets.py").write_text("raise RuntimeError('no canvas today')\n")
    generate(qtbot, window, mode="map", grid=3)
    assert window.canvases.currentWidget() is window.image_canvas
    assert window.image_canvas.image_count() == 9
    messages = [window.messages.item(i).text() for i in range(window.messages.count())]
    assert any("canvas could not be loaded" in m for m in messages)
