"""A style run's images: the user's folder of content photos (random crops and flips, drawn
from torch's random stream so that ``--resume`` continues exactly) and the style image.

Files are read through the app's own checked reader (``gdl_studio.core.imageio``: only known
formats, a pixel limit, EXIF rotation, any mode converted to RGB); files that are not
readable images are skipped and counted."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gdl_studio.core.datasets import IMAGE_SUFFIXES
from gdl_studio.core.errors import StudioError
from gdl_studio.core.imageio import open_image
from gdl_studio.training.errors import TrainError

KEEP = 2  # photos are kept at most KEEP x the training size on their short side


@dataclass
class ContentPhotos:
    """Content photos as uint8 (3, H, W) tensors of various sizes, short side between the
    training size and ``KEEP`` times it."""

    images: list[torch.Tensor]
    names: list[str]  # relative to the folder, in the order of ``images``
    skipped: int
    folder: str
    fingerprint: str  # sha256 over the names and bytes of the files used

    def __len__(self) -> int:
        return len(self.images)


def _resized(im: Any, short: int) -> Any:
    from PIL import Image

    w, h = im.size
    scale = short / min(w, h)
    return im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_content(folder: Path, size: int) -> ContentPhotos:
    """Every readable image under ``folder`` (sub-folders too, sorted), scaled so that its
    short side is at least ``size`` and at most ``KEEP * size``."""
    root = Path(folder)
    if not root.is_dir():
        raise TrainError(f"{root}: not a folder")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    return load_files(files, size, root)


def load_files(files: list[Path], size: int, root: Path | None = None) -> ContentPhotos:
    """The readable images among ``files`` (named relative to ``root``, else by file name),
    scaled as ``load_content`` does; unreadable ones are skipped and counted."""
    images, names, skipped = [], [], 0
    digest = hashlib.sha256()
    for path in files:
        try:
            im = open_image(path, "RGB")
        except StudioError:
            skipped += 1
            continue
        short = min(im.size)
        if short < size or short > KEEP * size:
            im = _resized(im, min(max(short, size), KEEP * size))
        images.append(torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1))
        name = path.relative_to(root).as_posix() if root is not None else path.name
        names.append(name)
        digest.update(name.encode() + b"\0" + file_sha256(path).encode())
    where = str(root) if root is not None else ", ".join(str(p) for p in files)
    if not images:
        why = f" ({skipped} unreadable file(s) skipped)" if skipped else ""
        raise TrainError(f"{where}: no readable images{why}")
    return ContentPhotos(images, names, skipped, where, digest.hexdigest())


def load_style(path: Path, short_side: int) -> torch.Tensor:
    """The style image as float (1, 3, h, w) in [0, 1], its short side scaled to
    ``short_side`` (the scale of its brush strokes relative to the training crops)."""
    try:
        im = open_image(Path(path), "RGB")
    except StudioError as exc:
        raise TrainError(f"--style: {exc}") from None
    im = _resized(im, short_side)
    x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return x.unsqueeze(0).contiguous()


def crop(image: torch.Tensor, top: int, left: int, side: int, size: int) -> torch.Tensor:
    """A ``side`` x ``side`` square of a uint8 (3, H, W) image at (top, left), resized to
    ``size`` x ``size`` (antialiased), as float (3, size, size) in [0, 1]."""
    x = image[:, top : top + side, left : left + side].float().div(255.0).unsqueeze(0)
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False).clamp_(0.0, 1.0)  # fmt: skip
    return x[0]


def random_crops(
    photos: ContentPhotos, n: int, size: int, min_scale: float, flip: bool = True
) -> torch.Tensor:
    """``n`` random training crops, float (n, 3, size, size) in [0, 1]: a random photo, a
    square of a random side between ``min_scale`` and all of its short side at a random place,
    resized to ``size``, flipped left-right half of the time.  Draws from torch's global
    random stream (the checkpoint keeps it)."""
    out = []
    for _ in range(n):
        image = photos.images[int(torch.randint(len(photos), ()))]
        h, w = image.shape[1:]
        short = min(h, w)
        u = float(torch.rand(()))
        side = max(8, round(short * (min_scale + (1.0 - min_scale) * u)))
        top = int(torch.randint(h - side + 1, ()))
        left = int(torch.randint(w - side + 1, ()))
        x = crop(image, top, left, side, size)
        if flip and bool(torch.rand(()) < 0.5):
            x = x.flip(-1)
        out.append(x)
    return torch.stack(out)


def centre_crops(photos: ContentPhotos, n: int, size: int) -> torch.Tensor:
    """The centre squares of the first ``n`` photos (fewer when there are fewer), float
    (n, 3, size, size): the fixed inputs of the sample grids."""
    out = []
    for image in photos.images[:n]:
        h, w = image.shape[1:]
        side = min(h, w)
        out.append(crop(image, (h - side) // 2, (w - side) // 2, side, size))
    return torch.stack(out)
