"""Hostile and unusual images: every way the studio reads one (a plugin's input, a dropped file,
the history, a dataset folder) refuses it with one clear line or converts it correctly."""

from __future__ import annotations

import io
import re
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gdl_studio.core.datasets import image_folder
from gdl_studio.core.host import JobError, Studio, prepare_job, run_job
from gdl_studio.core.imageio import MAX_IMAGE_PIXELS, InputError, open_image
from gdl_studio.core.results import load_result, read_provenance
from tests.reliability.conftest import describe, run_child


def png_header_only(w: int, h: int) -> bytes:
    """A ~100-byte PNG whose header declares ``w`` x ``h`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">L", len(data)) + body + struct.pack(">L", zlib.crc32(body))

    ihdr = struct.pack(">LLBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))  # fmt: skip


def gif_of_frames(side: int, frames: int) -> bytes:
    """A GIF of ``frames`` frames on a ``side`` x ``side`` canvas, each frame one pixel of data:
    a few bytes per frame that decode to a full canvas each."""
    out = b"GIF89a" + struct.pack("<HHBBB", side, side, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    for _ in range(frames):
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
        out += b"\x02\x02\x44\x01\x00"  # LZW: clear, pixel 0, end (min code size 2)
    return out + b"\x3b"


def image_bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def gradient(mode: str = "RGB") -> Image.Image:
    arr = np.zeros((16, 16, 3), np.uint8)
    arr[..., 0] = np.arange(16)[None, :] * 16
    arr[..., 2] = 200
    return Image.fromarray(arr).convert(mode)


# -- refused: one clear line, whatever path reads the file -------------------------------------
def readers(path: Path) -> dict[str, object]:
    """Call every reader of outside images on ``path``; what each raised (or 'ok')."""
    out: dict[str, object] = {}
    calls = [("input", open_image), ("drop", read_provenance)]
    if path.suffix in (".png", ".gif"):  # what the history and the gallery hold
        calls.append(("history", load_result))
    for name, fn in calls:
        try:
            fn(path)
            out[name] = "ok"
        except Exception as exc:
            out[name] = exc
    return out


BAD_FILES = {
    "zero-byte.png": (b"", "the file is empty"),
    "truncated.png": (None, "unreadable image|truncated"),
    "truncated.jpg": (None, "unreadable image|truncated"),
    "text.png": (b"just some notes, not a picture\n" * 20, "not an image in a supported format"),
    "bomb.png": (png_header_only(100_000, 100_000), "too large|Mpx"),
    "just-over-limit.png": (png_header_only(8_001, 8_000), "larger than the 64 Mpx limit"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_image_refused_by_every_reader(tmp_path: Path, name: str) -> None:
    data, message = BAD_FILES[name]
    if data is None:  # a real image cut in half
        fmt = "PNG" if name.endswith(".png") else "JPEG"
        whole = image_bytes(Image.fromarray(np.random.default_rng(0).integers(
            0, 256, (64, 64, 3), dtype=np.uint8)), fmt)  # fmt: skip
        data = whole[: len(whole) // 2]
    path = tmp_path / name
    path.write_bytes(data)
    t = time.perf_counter()
    seen = readers(path)
    assert time.perf_counter() - t < 2.0, "a bad image took seconds to refuse"
    for reader, outcome in seen.items():
        if reader == "drop" and isinstance(outcome, ValueError):
            continue  # "no provenance" is also a correct answer for a dropped file
        assert isinstance(outcome, InputError), f"{reader}: {outcome!r}"
        assert re.search(message, str(outcome)), f"{reader}: {outcome}"
        assert "\n" not in str(outcome) and name in str(outcome)


@pytest.mark.parametrize("fmt", ["TGA", "PCX", "ICO", "SGI", "DDS", "XBM", "PPM", "QOI", "EPS"])
def test_only_the_needed_formats_are_opened(tmp_path: Path, fmt: str) -> None:
    """Images Pillow could parse, in formats the studio does not need, named .png: refused
    before their decoder runs (EPS would start Ghostscript)."""
    mode = "1" if fmt == "XBM" else "RGB"
    path = tmp_path / "picture.png"
    path.write_bytes(image_bytes(Image.new(mode, (8, 8)), fmt))
    with Image.open(path) as im:  # Pillow alone does open it
        assert im.format == fmt
    for reader, outcome in readers(path).items():
        assert isinstance(outcome, InputError), f"{reader}: {outcome!r}"
        assert "not an image in a supported format" in str(outcome), f"{reader}: {outcome}"


def test_wrong_extension_is_judged_by_content(tmp_path: Path, studio: Studio) -> None:
    jpeg_named_png = tmp_path / "photo.png"
    jpeg_named_png.write_bytes(image_bytes(gradient(), "JPEG", quality=95))
    img = open_image(jpeg_named_png)
    assert img.mode == "RGB" and img.size == (16, 16)
    assert abs(int(img.getpixel((15, 0))[0]) - 240) < 12  # the right pixels, not garbage
    png_named_txt = tmp_path / "photo.txt"
    png_named_txt.write_bytes(image_bytes(gradient(), "PNG"))
    with pytest.raises(JobError, match=r"photo.txt: not an image or MIDI file"):
        prepare_job(studio, "tinygen", inputs=[png_named_txt])
    job = prepare_job(studio, "tinygen", inputs=[jpeg_named_png], params={"seed": 1})
    assert job.params["source"] == str(jpeg_named_png)


def test_bad_input_image_stops_the_job_before_it_runs(tmp_path: Path, studio: Studio) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(100_000, 100_000))
    with pytest.raises(JobError, match=r"bomb.png: .*too large"):
        prepare_job(studio, "tinygen", params={"source": str(bomb)})
    assert studio.history.entries() == []
    # The studio is still usable.
    assert run_job(prepare_job(studio, "tinygen", params={"seed": 2})).result.kind == "image"


# -- bombs in a child process with a memory limit ----------------------------------------------
def test_bombs_are_refused_within_a_memory_limit(tmp_path: Path) -> None:
    """A 100k x 100k PNG and a GIF of 400 frames that each decode to a 36 Mpx canvas (14 GB
    as RGB): refused in well under a second with 600 MB of address space."""
    (tmp_path / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    (tmp_path / "frames.gif").write_bytes(gif_of_frames(6000, 400))
    assert (tmp_path / "frames.gif").stat().st_size < 10_000
    proc = run_child(
        f"""
        import time
        from pathlib import Path
        from gdl_studio.core.imageio import InputError, open_image
        from gdl_studio.core.results import load_result, read_provenance
        folder = Path({str(tmp_path)!r})
        for name, fn in [("bomb.png", open_image), ("bomb.png", load_result),
                         ("bomb.png", read_provenance), ("frames.gif", load_result)]:
            t = time.perf_counter()
            try:
                fn(folder / name)
                print(name, fn.__name__, "ACCEPTED")
            except InputError as exc:
                print(name, fn.__name__, "refused", round(time.perf_counter() - t, 3), exc)
        """,
        memory_mb=600,
        cpu_s=20,
        timeout=60,
    )
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert len(lines) == 4 and all(" refused " in line for line in lines), describe(proc)
    assert all(float(line.split()[3]) < 1.0 for line in lines), proc.stdout
    assert "Mpx of frames" in lines[3]


def test_animation_within_the_limit_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "walk.gif"
    path.write_bytes(gif_of_frames(64, 10))
    result = load_result(path)
    assert len(result.images) == 10 and result.images[0].size == (64, 64)
    assert MAX_IMAGE_PIXELS > 10 * 64 * 64


# -- unusual but valid: converted, not refused --------------------------------------------------
def _sixteen_bit(path: Path) -> None:
    arr = np.zeros((4, 6), np.uint16)
    arr[:, 2:4], arr[:, 4:] = 500, 1000
    Image.fromarray(arr).save(path)


def _cmyk(path: Path) -> None:
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(path, format="JPEG", quality=95)


def _palette_alpha(path: Path) -> None:
    im = Image.new("P", (8, 8), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.info["transparency"] = 1
    im.save(path, transparency=1)


def _rgba(path: Path) -> None:
    Image.new("RGBA", (8, 8), (255, 0, 0, 128)).save(path)


def _grey_alpha(path: Path) -> None:
    Image.new("LA", (8, 8), (0, 0)).save(path)


def _animated(path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((0, 0, 255), (255, 255, 0), (0, 255, 0))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)


def _one_bit(path: Path) -> None:
    Image.new("1", (8, 8), 1).save(path)


CONVERTED = {  # file -> (writer, the RGB pixel expected at (5, 0))
    "16bit.png": (_sixteen_bit, (255, 255, 255)),  # the peak maps to white, not clipped
    "cmyk.jpg": (_cmyk, (255, 0, 0)),
    "palette-transparent.png": (_palette_alpha, (255, 255, 255)),  # on white
    "rgba-half.png": (_rgba, (255, 127, 127)),
    "grey-alpha.png": (_grey_alpha, (255, 255, 255)),
    "animated.gif": (_animated, (0, 0, 255)),  # the first frame
    "one-bit.png": (_one_bit, (255, 255, 255)),
}


@pytest.mark.parametrize("name", sorted(CONVERTED))
def test_unusual_modes_are_converted_to_rgb(tmp_path: Path, name: str) -> None:
    write, expected = CONVERTED[name]
    path = tmp_path / name
    write(path)
    img = open_image(path)
    assert img.mode == "RGB"
    got = img.getpixel((5, 0))
    assert all(abs(g - e) <= 8 for g, e in zip(got, expected, strict=True)), (got, expected)
    if name == "16bit.png":  # the middle band is half of the peak, not white
        assert abs(img.getpixel((2, 0))[0] - 127) <= 2
    mask = open_image(path, mode="L")
    assert mask.mode == "L" and mask.size == img.size


# -- a dataset folder: bad files are skipped and counted ---------------------------------------
def test_dataset_folder_skips_hostile_files(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    (folder / "cat").mkdir(parents=True)
    for i in range(3):
        gradient().save(folder / "cat" / f"{i}.png")
    (folder / "cat" / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    (folder / "cat" / "eps.png").write_bytes(image_bytes(Image.new("RGB", (8, 8)), "EPS"))
    (folder / "cat" / "empty.png").write_bytes(b"")
    data = image_folder(folder, size=8)
    assert len(data) == 3 and data.skipped == 3
    assert data.images.shape == (3, 8, 8, 3)
    assert "3 file(s) were not readable images" in data.notes[0]
