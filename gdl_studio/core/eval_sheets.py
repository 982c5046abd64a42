"""What the image plugins' ``eval`` commands share: the photos to evaluate on (the sample
photos, or a user's folder), and a contact sheet of labelled cells for anyone to look at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gdl_studio.core.errors import StudioError
from gdl_studio.core.host import IMAGE_SUFFIXES
from gdl_studio.core.imageio import InputError, open_image
from gdl_studio.core.sample_photos import all_sample_photos

LABEL_HEIGHT = 18


def eval_photos(data: Path | None, side: int, prog: str) -> list[tuple[str, Any]]:
    """(name, RGB image at most ``side`` px) for the sample photos (``data`` None), every
    image of a folder, or one file; never enlarged.  Errors name ``prog``."""
    from PIL import Image

    if data is None:
        paths = all_sample_photos()
    elif Path(data).is_dir():
        paths = sorted(p for p in Path(data).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        paths = [Path(data)]
    if not paths:
        raise StudioError(f"{prog}: no images in {data}")
    out = []
    for path in paths:
        try:
            photo = open_image(path, "RGB")
        except InputError as exc:
            raise StudioError(f"{prog}: {exc}") from None
        photo.thumbnail((side, side), Image.Resampling.LANCZOS)
        out.append((path.stem, photo))
    return out


def labelled(image: Any, text: str, size: tuple[int, int]) -> Any:
    """``image`` fitted and centred in a white cell of ``size``, under a one-line label."""
    from PIL import Image, ImageDraw, ImageOps

    cell = Image.new("RGB", (size[0], size[1] + LABEL_HEIGHT), "white")
    fitted = ImageOps.contain(image, size, Image.Resampling.LANCZOS)
    top = LABEL_HEIGHT + (size[1] - fitted.height) // 2
    cell.paste(fitted, ((size[0] - fitted.width) // 2, top))
    ImageDraw.Draw(cell).text((4, 3), text, fill="black")
    return cell


def sheet_of(rows: Sequence[Sequence[Any]], out: Path) -> Path:
    """Rows of equal-sized cells as one JPEG at ``out`` (its folder created)."""
    from PIL import Image

    width, height = rows[0][0].size
    sheet = Image.new("RGB", (width * len(rows[0]), height * len(rows)), "white")
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            sheet.paste(im, (c * width, r * height))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, quality=90)
    return out
