"""User-supplied images and MIDI: refused quickly with a clear message, or opened correctly."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import mido
import numpy as np
import pytest
from PIL import Image

from gdl_studio.core.imageio import MAX_MIDI_BYTES, InputError, check_input, open_image, open_midi


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def huge_header_png(width: int, height: int) -> bytes:
    """A valid-looking PNG whose header declares width x height, with one tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_valid_png(tmp_path: Path) -> None:
    path = tmp_path / "ok.png"
    Image.new("RGB", (5, 3), (10, 20, 30)).save(path)
    im = open_image(path)
    assert (im.mode, im.size) == ("RGB", (5, 3))
    assert im.getpixel((4, 2)) == (10, 20, 30)
    mask = open_image(path, "L")
    assert mask.mode == "L"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no such file"):
        open_image(tmp_path / "absent.png")


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty.png: the file is empty"):
        open_image(path)


def test_truncated_png(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    data = png_bytes(Image.fromarray(arr))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut.png: unreadable image"):
        open_image(path)


def test_text_file_with_png_extension(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("just some notes, not a picture\n" * 10)
    with pytest.raises(InputError, match=r"notes.png: not an image in a supported format"):
        open_image(path)


def test_unsupported_format_refused(tmp_path: Path) -> None:
    path = tmp_path / "pic.png"  # really a PPM: opened by Pillow, but not a format we accept
    Image.new("RGB", (4, 4)).save(path, format="PPM")
    with pytest.raises(InputError, match=r"not an image in a supported format"):
        open_image(path)


@pytest.mark.parametrize(("w", "h"), [(100_000, 100_000), (9_000, 9_000)])
def test_decompression_bomb_header_refused_quickly(tmp_path: Path, w: int, h: int) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(huge_header_png(w, h))
    assert path.stat().st_size < 200
    before = Image.MAX_IMAGE_PIXELS
    t = time.perf_counter()
    with pytest.raises(InputError, match=r"bomb.png: .*(too large|larger than)"):
        open_image(path)
    assert time.perf_counter() - t < 1.0
    assert before == Image.MAX_IMAGE_PIXELS  # the global limit is restored


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    arr = np.zeros((4, 6), dtype=np.uint16)
    arr[:, 2:4] = 500
    arr[:, 4:] = 1000
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")
    im = open_image(path)
    assert (im.mode, im.size) == ("RGB", (6, 4))
    assert im.getpixel((0, 0)) == (0, 0, 0)
    mid = im.getpixel((2, 0))
    assert mid[0] == mid[1] == mid[2] and 125 <= mid[0] <= 130
    assert im.getpixel((5, 3)) == (255, 255, 255)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (16, 16), (255, 0, 0, 0)).save(path, quality=95)
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    im = open_image(path)
    assert im.mode == "RGB"
    r, g, b = im.getpixel((8, 8))
    assert r < 20 and g > 235 and b > 235  # cyan


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    im = Image.new("P", (4, 2), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    for x in range(2, 4):
        for y in range(2):
            im.putpixel((x, y), 1)
    path = tmp_path / "pal.png"
    im.save(path, transparency=1)
    out = open_image(path)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 0, 0)
    assert out.getpixel((3, 1)) == (255, 255, 255)  # transparent -> white
    assert open_image(path, "RGBA").getpixel((3, 1))[3] == 0


def test_plain_palette_png(tmp_path: Path) -> None:
    path = tmp_path / "pal.png"
    Image.new("RGB", (4, 4), (0, 128, 255)).convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    with Image.open(path) as raw:
        assert raw.mode == "P"
    assert open_image(path).getpixel((1, 1)) == (0, 128, 255)


def test_rgba_png_composited_on_white(tmp_path: Path) -> None:
    im = Image.new("RGBA", (3, 1), (0, 0, 0, 0))
    im.putpixel((0, 0), (255, 0, 0, 255))
    im.putpixel((1, 0), (255, 0, 0, 128))
    path = tmp_path / "alpha.png"
    im.save(path)
    out = open_image(path)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 0, 0)
    half = out.getpixel((1, 0))
    assert half[0] == 255 and 120 <= half[1] <= 135 and half[1] == half[2]
    assert out.getpixel((2, 0)) == (255, 255, 255)
    kept = open_image(path, "RGBA")
    assert kept.mode == "RGBA" and kept.getpixel((2, 0))[3] == 0


def test_exif_rotated_jpeg(tmp_path: Path) -> None:
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    im.save(path, exif=exif.tobytes(), quality=95)
    out = open_image(path)
    assert out.size == (20, 40)
    top = out.getpixel((10, 5))
    bottom = out.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert open_image(path).getpixel((0, 0)) == (255, 0, 0)


# -- MIDI --------------------------------------------------------------------------------------
def midi_bytes(with_notes: bool = True, n: int = 8) -> bytes:
    midi = mido.MidiFile()
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("track_name", name="t"))
    for i in range(n):
        if with_notes:
            track.append(mido.Message("note_on", note=60 + i, velocity=90, time=0))
            track.append(mido.Message("note_off", note=60 + i, velocity=0, time=120))
        else:
            track.append(mido.Message("control_change", control=7, value=i, time=120))
    buf = io.BytesIO()
    midi.save(file=buf)
    return buf.getvalue()


def test_valid_midi(tmp_path: Path) -> None:
    path = tmp_path / "tune.mid"
    path.write_bytes(midi_bytes())
    midi = open_midi(path)
    notes = [m.note for t in midi.tracks for m in t if m.type == "note_on"]
    assert notes == list(range(60, 68))
    check_input(path, "midi")


def test_midi_garbage(tmp_path: Path) -> None:
    path = tmp_path / "g.mid"
    path.write_bytes(b"this is not midi at all" * 4)
    with pytest.raises(InputError, match=r"g.mid: not a readable MIDI file"):
        open_midi(path)


def test_midi_empty(tmp_path: Path) -> None:
    path = tmp_path / "e.mid"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=r"e.mid: the file is empty"):
        open_midi(path)


@pytest.mark.parametrize("cut", [5, 14, 30])
def test_midi_truncated(tmp_path: Path, cut: int) -> None:
    data = midi_bytes()
    path = tmp_path / "t.mid"
    path.write_bytes(data[: len(data) - cut] if cut != 5 else data[:cut])
    with pytest.raises(InputError, match=r"t.mid: "):
        open_midi(path)


def test_midi_without_notes(tmp_path: Path) -> None:
    path = tmp_path / "quiet.mid"
    path.write_bytes(midi_bytes(with_notes=False))
    with pytest.raises(InputError, match=r"quiet.mid: the MIDI file has no notes"):
        open_midi(path)


def test_midi_only_zero_velocity_notes(tmp_path: Path) -> None:
    midi = mido.MidiFile()
    track = mido.MidiTrack([mido.Message("note_on", note=60, velocity=0)])
    midi.tracks.append(track)
    path = tmp_path / "z.mid"
    midi.save(path)
    with pytest.raises(InputError, match=r"no notes"):
        open_midi(path)


def test_midi_too_large(tmp_path: Path) -> None:
    path = tmp_path / "big.mid"
    with open(path, "wb") as fh:
        fh.truncate(MAX_MIDI_BYTES + 1)
    with pytest.raises(InputError, match=r"too large"):
        open_midi(path)


def test_midi_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no such file"):
        open_midi(tmp_path / "absent.mid")


def test_check_input(tmp_path: Path) -> None:
    img = tmp_path / "m.png"
    Image.new("RGB", (2, 2)).save(img)
    check_input(img, "image")
    check_input(img, "mask")
    with pytest.raises(InputError):
        check_input(img, "midi")
    with pytest.raises(InputError, match=r"no such file"):
        check_input(tmp_path / "nope.txt", "text")
    bad = tmp_path / "bad.png"
    bad.write_text("x")
    with pytest.raises(InputError):
        check_input(bad, "mask")
