"""The history gallery's thumbnails."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

from PySide6.QtGui import QColor

from gdl_studio.core.history import HistoryEntry
from gdl_studio.core.midi_notes import Note, notes_to_midi
from gdl_studio.core.results import Provenance
from gdl_studio.qt.gallery import THUMB, Gallery, thumbnail
from gdl_studio.qt.icons import kind_icon


def entry(path: Path) -> HistoryEntry:
    return HistoryEntry(path, Provenance("music", "1", None, None, {}, 1, "CPU", "midi", "0", "0"))


def pixels(icon) -> set[tuple[int, int, int]]:
    image = icon.pixmap(THUMB, THUMB).toImage()
    return {QColor(image.pixel(x, y)).getRgb()[:3] for x in range(0, THUMB, 2)
            for y in range(0, THUMB, 2)}  # fmt: skip


def test_a_midi_result_shows_its_notes(qtbot, tmp_path: Path) -> None:
    # A low note first, a high one later: the thumbnail is a small piano roll of them.
    path = tmp_path / "piece.mid"
    notes_to_midi([Note(48, 0.0, 1.0, 100, 0, 0), Note(72, 1.0, 2.0, 100, 1, 0)]).save(path)
    image = thumbnail(entry(path)).pixmap(THUMB, THUMB).toImage()
    background = image.pixel(THUMB // 2, THUMB // 2)

    def lit(x: int) -> list[int]:  # the rows of column x that a note covers
        return [y for y in range(THUMB) if image.pixel(x, y) != background]

    first, second = lit(THUMB // 4), lit(3 * THUMB // 4)
    assert first and second
    assert min(first) > THUMB // 2 > max(second)  # the low note below, the high one above
    assert image.pixel(THUMB // 4, first[0]) != image.pixel(3 * THUMB // 4, second[0])  # channels


def test_an_unreadable_midi_file_gets_the_plain_icon(qtbot, tmp_path: Path) -> None:
    path = tmp_path / "broken.mid"
    path.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x05\x01\xe0MTrk\xff\xff\xff\xff")
    assert pixels(thumbnail(entry(path))) == pixels(kind_icon("midi", THUMB))
    assert pixels(thumbnail(entry(tmp_path / "gone.mid"))) == pixels(kind_icon("midi", THUMB))


def test_the_gallery_draws_midi_rolls_after_start_up(qtbot, tmp_path: Path) -> None:
    # Parsing MIDI files is left to the event loop: the entries appear at once with the
    # plain icon, and their piano rolls replace it soon after.
    path = tmp_path / "piece.mid"
    notes_to_midi([Note(48, 0.0, 1.0, 100, 0, 0), Note(72, 1.0, 2.0, 100, 1, 0)]).save(path)
    gallery = Gallery()
    qtbot.addWidget(gallery)
    gallery.set_entries([entry(path), entry(path.with_name("gone.mid"))])
    plain = pixels(kind_icon("midi", THUMB))
    assert [pixels(gallery.item(i).icon()) for i in range(2)] == [plain, plain]
    qtbot.waitUntil(lambda: pixels(gallery.item(1).icon()) != plain, timeout=3000)
    assert pixels(gallery.item(1).icon()) == pixels(thumbnail(entry(path)))
    assert pixels(gallery.item(0).icon()) == plain  # the unreadable one keeps the plain icon
