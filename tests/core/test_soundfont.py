"""Finding SoundFonts."""

from __future__ import annotations

from pathlib import Path

from gdl_studio.core import soundfont
from gdl_studio.core.config import Paths
from gdl_studio.core.soundfont import HOW_TO_ADD_SOUNDFONT, choose_soundfont, find_soundfonts


def test_finds_sf2_in_an_extra_dir_and_ignores_other_files(tmp_path: Path) -> None:
    (tmp_path / "Mine.sf2").write_bytes(b"RIFF")
    (tmp_path / "upper.SF2").write_bytes(b"RIFF")
    (tmp_path / "compressed.sf3").write_bytes(b"RIFF")
    (tmp_path / "readme.txt").write_text("not a font")
    found = find_soundfonts([tmp_path])
    ours = [p for p in found if p.parent == tmp_path]
    assert sorted(p.name for p in ours) == ["Mine.sf2", "upper.SF2"]
    assert not any(p.suffix.lower() != ".sf2" for p in found)


def test_duplicates_are_listed_once_and_well_known_fonts_come_first(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(soundfont, "system_soundfont_dirs", lambda: [])
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "Aardvark.sf2").write_bytes(b"RIFF")
    (a / "TimGM6mb.sf2").write_bytes(b"RIFF")
    (b / "FluidR3_GM.sf2").write_bytes(b"RIFF")
    (b / "link.sf2").symlink_to(a / "Aardvark.sf2")
    found = find_soundfonts([a, b, a])
    assert [p.name for p in found] == ["FluidR3_GM.sf2", "TimGM6mb.sf2", "Aardvark.sf2"]


def test_the_studio_soundfont_folder_is_searched(monkeypatch) -> None:
    monkeypatch.setattr(soundfont, "system_soundfont_dirs", lambda: [])
    folder = Paths.default().soundfonts
    folder.mkdir(parents=True)
    (folder / "Studio.sf2").write_bytes(b"RIFF")
    assert find_soundfonts() == [folder / "Studio.sf2"]
    assert choose_soundfont(None) == folder / "Studio.sf2"


def test_choose_prefers_the_configured_file_when_it_exists(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(soundfont, "system_soundfont_dirs", lambda: [])
    chosen = tmp_path / "chosen.sf2"
    chosen.write_bytes(b"RIFF")
    assert choose_soundfont(str(chosen)) == chosen
    assert choose_soundfont(str(tmp_path / "gone.sf2")) is None  # nothing else installed


def test_how_to_add_names_the_package_and_the_folder() -> None:
    assert "apt install" in HOW_TO_ADD_SOUNDFONT
    assert str(Paths.default().soundfonts.name) in HOW_TO_ADD_SOUNDFONT
    assert "Choose SoundFont" in HOW_TO_ADD_SOUNDFONT
