"""The music plugin in the studio window (offscreen): its notes stream onto the shell's piano
roll while it generates, and the finished piece is what the roll shows."""

from __future__ import annotations

from pathlib import Path

import mido
import pytest
from gdl_studio_plugins.music.tokenizers import ChoraleTokenizer
from PySide6.QtCore import QPoint, Qt

from gdl_studio.core.midi_notes import notes_from_midi
from gdl_studio.qt.main_window import MainWindow
from tests.fixtures.window import generate_and_wait
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
    generate_and_wait(qtbot, window)
    result, prov, path = window.current
    assert prov.plugin == "music" and path is not None and path.suffix == ".mid"
    assert streamed and streamed == sorted(streamed)  # the piece grew on the roll
    assert window.canvases.currentWidget() is window.piano_roll
    tok = ChoraleTokenizer()
    want = sorted((n.pitch, n.start / 2, n.end / 2) for n in tok.decode_notes(
        tok.encode_midi(result.midi)))  # fmt: skip
    shown = sorted((n.pitch, round(n.start, 6), round(n.end, 6)) for n in window.piano_roll.notes())
    assert shown == [(p, round(s, 6), round(e, 6)) for p, s, e in want]


MELODY = [(67, 0.0, 1.0), (69, 1.0, 1.5), (71, 1.5, 2.0)]  # seconds at the 120 bpm grid


def draw(qtbot, window: MainWindow, melody: list[tuple[int, float, float]]) -> None:
    """A new drawing of ``melody`` on the window's piano roll, dragged note by note."""
    roll = window.piano_roll
    window.canvases.setCurrentWidget(roll)
    roll.resize(900, 500)
    roll.new_drawing()
    view = roll.view
    for pitch, start, end in melody:
        y = round(view.pitch_to_y(pitch) + view.row_h / 2)
        a, b = round(view.time_to_x(start + 0.01)), round(view.time_to_x(end - 0.01))
        qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(a, y))
        qtbot.mouseMove(view, QPoint(b, y))
        qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(b, y))
    assert [(n.pitch, n.start, n.end) for n in roll.notes()] == melody


def test_a_melody_drawn_on_the_roll_is_harmonised(qtbot, window: MainWindow) -> None:
    """Draw mode → Use as input → harmonise: the drawn notes are the soprano of the result."""
    assert window.select_plugin("music")
    draw(qtbot, window, MELODY)
    window.piano_roll.use_button.click()
    path = Path(window.panel.values()["midi"])
    assert path.parent == window.studio.paths.data / "melodies" and path.is_file()
    window.panel.set_values({"mode": "harmonise", "temperature": 1.0, "length": 1})
    generate_and_wait(qtbot, window)
    result, prov, _ = window.current
    assert prov.params["mode"] == "harmonise"
    tok = ChoraleTokenizer()
    ids = tok.encode_midi(result.midi)
    soprano = [tok.id_pitch(t) for t in ids[0::4]]
    # 120 bpm: 2 s = 4 beats = 16 steps: G for 8 sixteenths, A for 4, B for 4.
    assert soprano == [67] * 8 + [69] * 4 + [71] * 4
    assert list(path.parent.iterdir()) == [path]  # saved once: the result did not save it again


def test_a_drawn_melody_is_kept_when_a_result_replaces_it(qtbot, window: MainWindow) -> None:
    assert window.select_plugin("music")
    draw(qtbot, window, MELODY)
    folder = window.studio.paths.data / "melodies"
    assert not folder.exists()
    window.panel.set_values({"length": 1, "temperature": 0.0})
    generate_and_wait(qtbot, window)
    (kept,) = folder.iterdir()
    messages = [window.messages.item(i).text() for i in range(window.messages.count())]
    assert any(str(kept) in m for m in messages)
    notes = notes_from_midi(mido.MidiFile(kept))
    assert [(n.pitch, round(n.start, 6), round(n.end, 6)) for n in notes] == MELODY
    assert not window.piano_roll.edited  # the roll shows the result now
    generate_and_wait(qtbot, window)
    assert list(folder.iterdir()) == [kept]  # a generated piece is not a drawing to keep
