"""Image datasets as numpy arrays, for training (through the train extra) and for `eval`.

No torch here: the app's evaluators use these readers too.  Images come back as uint8 arrays
of shape (N, H, W) for grey or (N, H, W, 3) for colour, labels as int64 (N,), -1 when a folder
has no class sub-folders.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gdl_studio.core.errors import StudioError
from gdl_studio.core.imageio import IMAGE_FORMATS, open_checked

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")  # fmt: skip
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")  # fmt: skip
FASHION_DIRS = ("/usr/share/datasets/fashion-mnist",)  # Debian: dataset-fashion-mnist
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".pgm"}
DATASET_FORMATS = (*IMAGE_FORMATS, "PPM")  # PPM also reads .pgm


class DatasetError(StudioError):
    """Data that cannot be used for training or evaluation; the message says why."""


def dataset_info(
    known: dict[str, dict[str, str]], name: str, path: str | Path | None = None
) -> dict[str, str]:
    """A card's ``data`` entry: ``known[name]`` (a copy), or for a user folder its name and
    path, licence unknown."""
    if name in known:
        return dict(known[name])
    return {
        "name": Path(path).name if path else "folder",
        "source": str(path or ""),
        "licence": "unknown (the user's own images)",
    }


@dataclass
class ImageSet:
    """A split of a dataset: images, labels and class names, plus what was skipped."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...] = ()
    skipped: int = 0
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise DatasetError(f"{Path(path).name}: not an IDX file")
    dtype_code, ndim = raw[2], raw[3]
    dtypes: dict[int, Any] = {
        0x08: np.uint8,
        0x09: np.int8,
        0x0B: ">i2",
        0x0C: ">i4",
        0x0D: ">f4",
        0x0E: ">f8",
    }
    if dtype_code not in dtypes:
        raise DatasetError(f"{Path(path).name}: unknown IDX type 0x{dtype_code:02x}")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=dtypes[dtype_code], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DatasetError(f"{Path(path).name}: truncated IDX file")
    return data.reshape(shape)


def find_fashion_mnist(root: Path | None = None) -> Path:
    """The folder with the Fashion-MNIST IDX files: ``root``, ``$GDL_FASHION_MNIST`` or the
    Debian package's folder."""
    candidates = [root] if root else []
    if os.environ.get("GDL_FASHION_MNIST"):
        candidates.append(Path(os.environ["GDL_FASHION_MNIST"]))
    candidates += [Path(d) for d in FASHION_DIRS]
    for c in candidates:
        if c is not None and _idx_file(c, "train-images-idx3-ubyte") is not None:
            return c
    raise DatasetError(
        "Fashion-MNIST not found: install it (sudo apt install dataset-fashion-mnist) or pass "
        "the folder holding train-images-idx3-ubyte(.gz)"
    )


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def fashion_mnist(split: str = "train", root: Path | None = None) -> ImageSet:
    """Fashion-MNIST (60,000 train / 10,000 test, 28x28 grey, 10 classes; MIT licence)."""
    folder = find_fashion_mnist(root)
    prefix = {"train": "train", "test": "t10k"}[split]
    images = _idx_file(folder, f"{prefix}-images-idx3-ubyte")
    labels = _idx_file(folder, f"{prefix}-labels-idx1-ubyte")
    if images is None or labels is None:
        raise DatasetError(f"{folder}: the {split} split of Fashion-MNIST is missing")
    x, y = read_idx(images), read_idx(labels).astype(np.int64)
    return ImageSet(x, y, FASHION_CLASSES, source=str(folder))


def _decode(data: bytes, size: int | None, grey: bool) -> np.ndarray:
    from PIL import Image, ImageOps

    # A user's folder is as untrusted as a dropped file: the same formats and pixel limit.
    with open_checked(io.BytesIO(data), DATASET_FORMATS) as opened:
        opened.load()
        im: Image.Image = ImageOps.exif_transpose(opened) or opened
        im = im.convert("L" if grey else "RGB")
        if size is not None and im.size != (size, size):
            im = ImageOps.fit(im, (size, size), Image.Resampling.LANCZOS)  # centre crop + resize
        return np.asarray(im, dtype=np.uint8)


def _collect(
    items: Iterable[tuple[str, str, bytes | Path]], size: int | None, grey: bool, source: str
) -> ImageSet:
    """Decode (class, name, data) items; undecodable files are skipped and counted."""
    images: list[np.ndarray] = []
    class_names: list[str] = []
    raw_labels: list[str] = []
    skipped = 0
    for cls, _name, data in items:
        try:
            payload = data.read_bytes() if isinstance(data, Path) else data
            arr = _decode(payload, size, grey)
        except Exception:  # Pillow raises many types for bad files: all mean "skip it"
            skipped += 1
            continue
        if images and arr.shape != images[0].shape:
            skipped += 1  # mixed sizes without a target size: keep the first size
            continue
        images.append(arr)
        raw_labels.append(cls)
    if not images:
        raise DatasetError(
            f"{source}: no readable images" + (f" ({skipped} skipped)" if skipped else "")
        )
    class_names = sorted({c for c in raw_labels if c})
    index = {c: i for i, c in enumerate(class_names)}
    labels = np.array([index.get(c, -1) for c in raw_labels], dtype=np.int64)
    out = ImageSet(np.stack(images), labels, tuple(class_names), skipped, source)
    if skipped:
        out.notes.append(f"{skipped} file(s) were not readable images and were skipped")
    return out


def image_folder(path: Path, size: int | None = None, grey: bool = False) -> ImageSet:
    """A user's folder: either class sub-folders of images, or images directly inside.

    Images are centre-cropped and resized to ``size``; corrupt or non-image files are skipped
    with a count; an empty folder is a clear error.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DatasetError(f"{root}: the folder is empty")

    def items() -> Iterable[tuple[str, str, Path]]:
        for p in files:
            rel = p.relative_to(root)
            cls = rel.parts[0] if len(rel.parts) > 1 else ""
            yield cls, p.name, p

    return _collect(items(), size, grey, str(root))


def cifar10(split: str = "train", path: Path | None = None) -> ImageSet:
    """CIFAR-10 from the JPEG tarball (train/CLASS/N.jpg, test/CLASS/N.jpg) or such a folder."""
    if path is None:
        raise DatasetError("CIFAR-10: pass the cifar10-jpg.tar.gz file or its unpacked folder")
    path = Path(path)
    if path.is_dir():
        sub = path / split if (path / split).is_dir() else path
        out = image_folder(sub, 32)
    else:
        with tarfile.open(path) as tar:
            members = [m for m in tar.getmembers() if m.isfile()]

            def items() -> Iterable[tuple[str, str, bytes]]:
                for m in members:
                    parts = Path(m.name).parts
                    if split in parts and Path(m.name).suffix.lower() in IMAGE_SUFFIXES:
                        i = parts.index(split)
                        if len(parts) > i + 2:
                            f = tar.extractfile(m)
                            if f is not None:
                                yield parts[i + 1], parts[-1], f.read()

            out = _collect(items(), 32, False, str(path))
    if set(out.classes) == set(CIFAR10_CLASSES):
        out.classes = CIFAR10_CLASSES  # sorted order is already the canonical order
    return out


def load(
    name: str, split: str = "train", path: Path | None = None, size: int | None = None
) -> ImageSet:
    """By name: ``fashion`` (Fashion-MNIST), ``cifar10`` or ``folder``."""
    if name == "fashion":
        return fashion_mnist(split, path)
    if name == "cifar10":
        return cifar10(split, path)
    if name == "folder":
        if path is None:
            raise DatasetError("a folder dataset needs a path")
        return image_folder(path, size)
    raise DatasetError(f"unknown dataset {name!r} (fashion, cifar10, folder)")
