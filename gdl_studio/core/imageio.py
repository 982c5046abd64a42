"""Opening user-supplied images and MIDI files safely, with messages a person can act on."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from gdl_studio.core.errors import StudioError
from gdl_studio.core.midi_check import check_midi_bytes

# Pillow's own default is ~89 Mpx with a warning and 2x that as an error; we refuse from 64 Mpx,
# so a "decompression bomb" never reaches a plugin.
MAX_IMAGE_PIXELS = 64_000_000
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
MAX_MIDI_BYTES = 16 * 1024 * 1024


class InputError(StudioError, ValueError):
    """A user-supplied file that cannot be used; the message says why, in one line."""


def open_image(path: Path, mode: str = "RGB") -> Any:
    """Open an image for a plugin: size-limited, EXIF-rotated, converted to ``mode``.

    Only the formats in :data:`IMAGE_FORMATS` are opened; 16-bit, palette, CMYK and alpha images
    are converted (alpha is composited on white for RGB).  Animated files give their first frame.
    """
    from PIL import Image, ImageOps

    path = Path(path)
    with open_checked(path) as im:
        try:
            im.seek(0)
            im.load()
            img = ImageOps.exif_transpose(im) or im
            return _convert(img, mode)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise InputError(f"{path.name}: unreadable image ({exc})") from None


def open_checked(source: Path | IO[bytes], formats: Sequence[str] = IMAGE_FORMATS) -> Any:
    """``Image.open`` for files from outside: only ``formats`` are tried (Pillow otherwise tries
    every decoder it has, each one more parser facing hostile bytes), and an image of more than
    :data:`MAX_IMAGE_PIXELS` is refused from its header, before any pixel is decoded.

    The lazily opened image is returned (use it in a ``with``); every failure is an
    :class:`InputError`.  Pillow's global limit is left alone: changing it per call would race
    with a job decoding in another thread, so the size is checked here instead.
    """
    from PIL import Image, UnidentifiedImageError

    name = Path(source).name if isinstance(source, (str, Path)) else "image"
    if isinstance(source, (str, Path)):
        if not Path(source).is_file():
            raise InputError(f"{source}: no such file")
        if Path(source).stat().st_size == 0:
            raise InputError(f"{name}: the file is empty")
    try:
        im = Image.open(source, formats=list(formats))
    except Image.DecompressionBombError as exc:  # not an OSError: it must be caught by name
        raise InputError(f"{name}: image too large ({exc})") from None
    except UnidentifiedImageError:
        raise InputError(f"{name}: not an image in a supported format") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{name}: unreadable image ({exc})") from None
    w, h = im.size
    if w * h > MAX_IMAGE_PIXELS:
        im.close()
        raise InputError(
            f"{name}: {w}x{h} is larger than the {MAX_IMAGE_PIXELS // 10**6} Mpx limit"
        )
    return im


def _convert(img: Any, mode: str) -> Any:
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit integer images: scale to 8 bits instead of clipping to white.
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        peak = arr.max() or 1.0
        img = Image.fromarray((arr * (255.0 / peak)).clip(0, 255).astype("uint8"), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if mode == "RGB" and img.mode in ("RGBA", "LA"):
        base = Image.new("RGB", img.size, "white")
        base.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return base
    return img.convert(mode) if img.mode != mode else img.copy()


def read_midi(path: Path) -> Any:
    """Parse a MIDI file with mido after checks that bound the work: its size, then a walk
    over its structure (:mod:`gdl_studio.core.midi_check`); data bytes above 127 are clipped.

    Used for every MIDI file the studio reads (inputs, dropped files, history), so a hostile
    file costs at most a fraction of a second and a bounded amount of memory.
    """
    import mido

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path.name}: the file is empty")
    if size > MAX_MIDI_BYTES:
        raise InputError(f"{path.name}: {size // 2**20} MB is too large for a MIDI file")
    data = path.read_bytes()
    try:
        check_midi_bytes(data)
        # From memory, not the path: mido reads a header's claimed length with one read(), and
        # a buffered file would first allocate all the gigabytes a forged header claims.
        return mido.MidiFile(file=io.BytesIO(data), clip=True)
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise InputError(f"{path.name}: not a readable MIDI file ({exc})") from None


def open_midi(path: Path) -> Any:
    """A MIDI file given to a plugin: :func:`read_midi`, refusing files without notes."""
    midi = read_midi(path)
    if not any(m.type == "note_on" and m.velocity > 0 for t in midi.tracks for m in t):
        raise InputError(f"{Path(path).name}: the MIDI file has no notes")
    return midi


def check_input(path: Path, kind: str) -> None:
    """Raise :class:`InputError` unless ``path`` can be opened as ``kind`` (image/mask/midi)."""
    if kind in ("image", "mask"):
        open_image(path, "L" if kind == "mask" else "RGB")
    elif kind == "midi":
        open_midi(path)
    elif not Path(path).is_file():
        raise InputError(f"{path}: no such file")
