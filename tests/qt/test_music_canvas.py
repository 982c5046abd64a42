"""The music plugin in the studio window (offscreen): its notes stream onto the shell's piano
roll while it generates, and the finished piece is what the roll shows."""

from __future__ import annotations

from pathlib import Path

import pytest
from gdl_studio_plugins.music.tokenizers import ChoraleTokenizer
from PySide6.QtCore import Qt

from gdl_studio.qt.main_window import MainWindow
from tests.plugins.test_music_plugin import Bigram, make_studio, write_jsb_json


@pytest.fixture
def window(qtbot, tmp_path: Path) -> MainWindow:
    studio = make_studio(tmp_path, Bigram(), write_jsb_json(tmp_path / "chorales.json"))
    win = MainWindow(studio)
    qtbot.addWidget(win)
    win.show()
    return win


def test_generated_notes_stream_to_the_piano_roll(qtbot, window: MainWindow) -> None:
    assert window.select_plugin("music")
    window.panel.set_values({"length": 3, "temperature": 0.0, "tempo": 120})
    streamed: list[int] = []
    original = window.piano_roll.set_notes
    window.piano_roll.set_notes = lambda notes: (streamed.append(len(notes)), original(notes))
    with qtbot.waitSignal(window.runner.running_changed, timeout=20_000,
                          check_params_cb=lambda running: not running):  # fmt: skip
        qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    result, prov, path = window.current
    assert prov.plugin == "music" and path is not None and path.suffix == ".mid"
    assert streamed and streamed == sorted(streamed)  # the piece grew on the roll
    assert window.canvases.currentWidget() is window.piano_roll
    tok = ChoraleTokenizer()
    want = sorted((n.pitch, n.start / 2, n.end / 2) for n in tok.decode_notes(
        tok.encode_midi(result.midi)))  # fmt: skip
    shown = sorted((n.pitch, round(n.start, 6), round(n.end, 6)) for n in window.piano_roll.notes())
    assert shown == [(p, round(s, 6), round(e, 6)) for p, s, e in want]
