"""Opening user-supplied images and MIDI files safely, with messages a person can act on."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from gdl_studio.core.errors import StudioError

# Pillow's own default is ~89 Mpx with a warning and 2x that as an error; we make the warning an
# error too, so a "decompression bomb" never reaches a plugin.
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
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path.name}: the file is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
        try:
            with Image.open(path, formats=IMAGE_FORMATS) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise InputError(
                        f"{path.name}: {w}x{h} is larger than the "
                        f"{MAX_IMAGE_PIXELS // 10**6} Mpx limit"
                    )
                im.seek(0)
                im.load()
                img = ImageOps.exif_transpose(im) or im
                return _convert(img, mode)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InputError(f"{path.name}: image too large ({exc})") from None
        except UnidentifiedImageError:
            raise InputError(f"{path.name}: not an image in a supported format") from None
        except (OSError, SyntaxError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{path.name}: unreadable image ({exc})") from None
        finally:
            Image.MAX_IMAGE_PIXELS = old


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


def open_midi(path: Path) -> Any:
    """Parse a MIDI file with mido, refusing oversized or malformed files with a clear message."""
    import mido

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path.name}: the file is empty")
    if size > MAX_MIDI_BYTES:
        raise InputError(f"{path.name}: {size // 2**20} MB is too large for a MIDI file")
    try:
        midi = mido.MidiFile(path, clip=True)
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise InputError(f"{path.name}: not a readable MIDI file ({exc})") from None
    if not any(m.type == "note_on" and m.velocity > 0 for t in midi.tracks for m in t):
        raise InputError(f"{path.name}: the MIDI file has no notes")
    return midi


def check_input(path: Path, kind: str) -> None:
    """Raise :class:`InputError` unless ``path`` can be opened as ``kind`` (image/mask/midi)."""
    if kind in ("image", "mask"):
        open_image(path, "L" if kind == "mask" else "RGB")
    elif kind == "midi":
        open_midi(path)
    elif not Path(path).is_file():
        raise InputError(f"{path}: no such file")
