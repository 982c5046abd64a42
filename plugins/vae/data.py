"""The VAE's datasets as numpy arrays (no torch: the app, the evaluator and the training code
all read them through here, so they agree on every split).

- ``fashion``: Fashion-MNIST, 28x28 grey, its own train/test split.
- ``faces`` / ``folder``: a folder of images (class sub-folders or not), centre-cropped and
  resized to ``size``; the ORL faces are ``faces`` (40 people x 10 photos, grey).  Folders
  have no test split of their own: every ``HOLDOUT``-th image of each class (in file order)
  is held out, so the test set has photos of the same people that training never saw.
  Without a path, ``faces`` reads ``$GDL_ORL_FACES`` (as Fashion-MNIST reads
  ``$GDL_FASHION_MNIST``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gdl_studio.core import datasets
from gdl_studio.core.datasets import DatasetError, ImageSet

HOLDOUT = 5  # every 5th image of a class is a test image: 2 of each ORL person's 10
NATIVE_SIZE = {"fashion": 28}
DATASETS = ("fashion", "faces", "folder")
DATA_INFO: dict[str, dict[str, str]] = {
    "fashion": {
        "name": "Fashion-MNIST",
        "source": "Debian package dataset-fashion-mnist",
        "licence": "MIT",
    },
    "faces": {
        "name": "ORL / AT&T face database (40 people x 10 photos)",
        "source": "AT&T Laboratories Cambridge (formerly the Olivetti Research Laboratory)",
        "licence": "free for research with credit to AT&T Laboratories Cambridge",
    },
}


def data_info(name: str, path: str | Path | None = None) -> dict[str, str]:
    """The card's ``data`` entry for a dataset (a user folder: its path, licence unknown)."""
    return datasets.dataset_info(DATA_INFO, name, path)


def holdout_mask(labels: np.ndarray, every: int = HOLDOUT) -> np.ndarray:
    """True for the test images: the every-th image of each class in order (of all images
    when there are no classes)."""
    mask = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        mask[idx[every - 1 :: every]] = True
    return mask


def load(
    name: str, split: str, path: str | Path | None = None, size: int | None = None
) -> ImageSet:
    """One split (``train`` or ``test``) of ``name``; images are uint8 (N, H, W) grey or
    (N, H, W, 3) colour, as :mod:`gdl_studio.core.datasets` gives them.

    Raises :class:`DatasetError` with a one-line reason when the data cannot be used."""
    if split not in ("train", "test"):
        raise DatasetError(f"unknown split {split!r} (train, test)")
    p = Path(path).expanduser() if path else None
    if name == "fashion":
        if size not in (None, 28):
            raise DatasetError(f"Fashion-MNIST images are 28 px; size {size} is not supported")
        return datasets.fashion_mnist(split, p)
    if name not in ("faces", "folder"):
        raise DatasetError(f"unknown dataset {name!r} ({', '.join(DATASETS)})")
    if p is None and name == "faces" and os.environ.get("GDL_ORL_FACES"):
        p = Path(os.environ["GDL_ORL_FACES"]).expanduser()
    if p is None:
        what = (
            "the ORL faces folder (att_faces, or set GDL_ORL_FACES)"
            if name == "faces"
            else "an image folder"
        )
        raise DatasetError(f"the {name} dataset needs a path: {what}")
    whole = datasets.image_folder(p, size or 64, grey=name == "faces")
    mask = holdout_mask(whole.labels)
    keep = mask if split == "test" else ~mask
    return ImageSet(
        whole.images[keep],
        whole.labels[keep],
        whole.classes,
        whole.skipped,
        whole.source,
        list(whole.notes),
    )
