"""Results and provenance: what goes into PNG, MIDI and text files comes back out identical."""

from __future__ import annotations

import json
from pathlib import Path

import mido
import numpy as np
import pytest
from PIL import Image

from gdl_studio.core.results import (
    PROVENANCE_KEY,
    Provenance,
    Result,
    grid,
    load_result,
    read_provenance,
    save_result,
)

SHA = "0123456789abcdef" * 4


def prov(kind: str = "image", **kw) -> Provenance:
    base = dict(
        plugin="tinygen",
        plugin_version="1.2.3",
        model="tiny",
        model_sha256=SHA,
        params={"seed": 5, "steps": 3, "prompt": "a cat, red", "style": "fancy", "crisp": True},
        seed=5,
        provider="CPU: chosen with GDL_STUDIO_PROVIDERS=cpu",
        kind=kind,
        app_version="0.1.0",
        ort_version="1.31.1",
        extra={"seeds": [5]},
    )
    base.update(kw)
    return Provenance(**base)


def coloured(colour: tuple[int, int, int], size: tuple[int, int] = (8, 8)) -> Image.Image:
    return Image.new("RGB", size, colour)


def noise(seed: int) -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


def pixels(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"))


def test_png_provenance_round_trip(tmp_path: Path) -> None:
    img = noise(1)
    p = prov()
    path = tmp_path / "out.png"
    assert save_result(Result.image([img]), p, path) == [path]
    with Image.open(path) as im:
        assert im.format == "PNG"
        params_text = im.info["parameters"]
        assert PROVENANCE_KEY in im.info
        np.testing.assert_array_equal(pixels(im), pixels(img))
    first, last = params_text.split("\n")
    assert first == "a cat, red"
    assert "Seed: 5" in last
    assert f"Model hash: {SHA[:10]}" in last
    assert "Steps: 3" in last and "Size: 8x8" in last
    assert "Model: tiny" in last and "Plugin: tinygen 1.2.3" in last
    assert "Version: GDL Studio 0.1.0" in last

    back = read_provenance(path)
    assert back == p
    assert (back.params, back.seed, back.model, back.provider) == (
        p.params,
        p.seed,
        p.model,
        p.provider,
    )
    assert back.extra == {"seeds": [5]}
    assert back.to_json() == p.to_json()
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_a1111_quotes_values_with_commas() -> None:
    p = prov(params={"seed": 1, "guidance": "low, then high", "extra": None}, seed=1)
    text = p.a1111_parameters((4, 2))
    first, last = text.split("\n")
    assert first == "tinygen tiny"  # no prompt: plugin and model
    assert 'Guidance: "low, then high"' in last
    assert "Extra" not in last
    assert "Size: 4x2" in last


def test_batch_grid_and_single_cell(tmp_path: Path) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    result = Result.image([coloured(c) for c in colours], columns=2)
    p = prov()
    sheet_path = tmp_path / "grid.png"
    save_result(result, p, sheet_path)
    with Image.open(sheet_path) as im:
        sheet = pixels(im)
    assert sheet.shape == (18, 18, 3)  # 2x2 cells of 8 with a 2-pixel gap
    assert tuple(sheet[0, 0]) == colours[0]
    assert tuple(sheet[0, 10]) == colours[1]
    assert tuple(sheet[10, 0]) == colours[2]
    assert tuple(sheet[17, 17]) == colours[3]
    assert tuple(sheet[8, 8]) == (255, 255, 255)  # the gap
    assert "index" not in read_provenance(sheet_path).extra

    cell_path = tmp_path / "cell.png"
    save_result(result, p, cell_path, index=1)
    with Image.open(cell_path) as im:
        assert im.size == (8, 8)
        assert {tuple(px) for px in pixels(im).reshape(-1, 3)} == {colours[1]}
    back = read_provenance(cell_path)
    assert back.extra == {"seeds": [5], "index": 1}
    assert back.params == p.params
    assert p.extra == {"seeds": [5]}  # the caller's record is not changed


def test_grid_shapes() -> None:
    one = coloured((1, 2, 3))
    assert grid([one]) is one
    three = grid([coloured((i, i, i)) for i in range(3)])
    assert three.size == (18, 18)  # ceil(sqrt(3)) = 2 columns, 2 rows
    row = grid([coloured((i, i, i)) for i in range(3)], columns=3, gap=0)
    assert row.size == (24, 8)
    rgba = grid([one, Image.new("RGBA", (8, 8), (0, 0, 0, 0))])
    assert rgba.mode == "RGBA"


def scale_midi() -> mido.MidiFile:
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    for step in (0, 2, 4, 5, 7):
        track.append(mido.Message("note_on", note=60 + step, velocity=80, time=0))
        track.append(mido.Message("note_off", note=60 + step, velocity=0, time=240))
    return midi


def notes(midi: mido.MidiFile) -> list[tuple[str, int, int, int]]:
    return [
        (m.type, m.note, m.velocity, m.time)
        for t in midi.tracks
        for m in t
        if m.type in ("note_on", "note_off")
    ]


def test_midi_provenance_round_trip(tmp_path: Path) -> None:
    midi = scale_midi()
    before = notes(midi)
    p = prov("midi", params={"root": 60, "seed": 9}, seed=9)
    path = tmp_path / "out.mid"
    assert save_result(Result.of_midi(midi), p, path) == [path]
    assert len(midi.tracks[0]) == 10  # the caller's MidiFile is not changed

    back = mido.MidiFile(path)
    texts = [m.text for m in back.tracks[0] if m.is_meta and m.type == "text"]
    assert texts[0] == "Made with GDL Studio: tinygen tiny"
    assert texts[1] == f"{PROVENANCE_KEY}:{p.to_json()}"
    assert notes(back) == before
    assert back.ticks_per_beat == 480
    assert read_provenance(path) == p

    # Re-saving a loaded file keeps exactly one provenance record, the new one.
    again = load_result(path)
    assert again.kind == "midi" and notes(again.midi) == before
    p2 = prov("midi", params={"root": 62, "seed": 10}, seed=10)
    save_result(again, p2, path)
    records = [
        m
        for m in mido.MidiFile(path).tracks[0]
        if m.is_meta and m.type == "text" and m.text.startswith(PROVENANCE_KEY + ":")
    ]
    assert len(records) == 1
    assert read_provenance(path) == p2
    assert notes(mido.MidiFile(path)) == before


def test_midi_without_tracks_gets_one(tmp_path: Path) -> None:
    path = tmp_path / "empty.mid"
    save_result(Result.of_midi(mido.MidiFile()), prov("midi"), path)
    assert read_provenance(path).kind == "midi"


def test_text_provenance_sidecar(tmp_path: Path) -> None:
    p = prov("text", params={"prompt": "héllo", "repeat": 2, "seed": 1}, seed=1)
    path = tmp_path / "out.txt"
    written = save_result(Result.of_text("héllo héllo\n"), p, path)
    sidecar = tmp_path / "out.txt.json"
    assert written == [path, sidecar]
    assert path.read_text(encoding="utf-8") == "héllo héllo\n"
    assert json.loads(sidecar.read_text())["params"]["prompt"] == "héllo"
    assert read_provenance(path) == p
    assert read_provenance(sidecar) == p
    back = load_result(path)
    assert (back.kind, back.text) == ("text", "héllo héllo\n")


def test_plain_files_have_no_provenance(tmp_path: Path) -> None:
    png = tmp_path / "plain.png"
    coloured((9, 9, 9)).save(png)
    with pytest.raises(ValueError, match=r"plain.png was not made by GDL Studio"):
        read_provenance(png)
    mid = tmp_path / "plain.mid"
    scale_midi().save(mid)
    with pytest.raises(ValueError, match=r"plain.mid was not made by GDL Studio"):
        read_provenance(mid)
    txt = tmp_path / "plain.txt"
    txt.write_text("x")
    with pytest.raises(ValueError, match=r"no GDL Studio provenance"):
        read_provenance(txt)
    jpg = tmp_path / "photo.jpg"
    coloured((9, 9, 9)).save(jpg)
    with pytest.raises(ValueError):
        read_provenance(jpg)
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match=r"not a GDL Studio provenance record"):
        read_provenance(other)
    with pytest.raises(ValueError):
        Provenance.from_json("[1, 2]")


@pytest.mark.parametrize(
    ("result", "name"),
    [
        (Result.image([coloured((1, 1, 1))]), "x.jpg"),
        (Result.image([coloured((1, 1, 1))]), "x"),
        (Result.of_text("t"), "x.png"),
        (Result.of_midi(mido.MidiFile()), "x.midi"),
    ],
)
def test_wrong_extension_refused(tmp_path: Path, result: Result, name: str) -> None:
    with pytest.raises(ValueError, match=f"a {result.kind} result is saved as"):
        save_result(result, prov(result.kind), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_upper_case_extension_accepted(tmp_path: Path) -> None:
    path = tmp_path / "OUT.PNG"
    save_result(Result.image([coloured((1, 2, 3))]), prov(), path)
    assert read_provenance(path).plugin == "tinygen"


def test_load_result_image_round_trip(tmp_path: Path) -> None:
    img = noise(7)
    path = tmp_path / "r.png"
    save_result(Result.image([img]), prov(), path)
    back = load_result(path)
    assert back.kind == "image" and len(back.images) == 1
    np.testing.assert_array_equal(pixels(back.images[0]), pixels(img))
    # The returned image is detached from the (closed) file.
    path.unlink()
    assert back.images[0].getpixel((0, 0)) == img.getpixel((0, 0))


def test_provenance_json_is_stable_and_ascii() -> None:
    p = prov(params={"prompt": "ünïcode ✓"})
    text = p.to_json()
    assert text.isascii()
    assert Provenance.from_json(text) == p
    # Unknown keys from a newer version are ignored.
    data = json.loads(text)
    data["future_field"] = 1
    assert Provenance.from_json(json.dumps(data)) == p
