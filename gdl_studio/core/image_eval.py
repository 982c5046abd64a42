"""The image plugins' shared evaluator: an independent classifier's features give Fréchet
distance and class agreement; nearest neighbours in pixel space give memorisation.

The classifiers are trained by the project (plugins/gan/train/train_classifier.py), exported to
ONNX and shipped in ``assets/eval/<dataset>-classifier/`` with a card that holds their sha256.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gdl_studio.core import datasets
from gdl_studio.core.datasets import ImageSet
from gdl_studio.core.discovery import assets_folder
from gdl_studio.core.errors import StudioError
from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.manifest import GraphSpec
from gdl_studio.core.metrics import frechet_distance, memorization_share
from gdl_studio.core.runtime import SessionFactory

BATCH = 500


def classifier_path(dataset: str) -> Path:
    root = assets_folder()
    if root is None:
        raise StudioError("the shipped assets folder is missing")
    return root / "eval" / f"{dataset}-classifier" / "model.onnx"


def to_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) or (N, H, W, C) -> float32 NCHW in [-1, 1], as the networks take."""
    x = images.astype(np.float32) / 127.5 - 1.0
    return x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """float NCHW in [-1, 1] -> uint8 (N, H, W) or (N, H, W, C)."""
    img = np.clip((x + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return img[:, 0] if img.shape[1] == 1 else img.transpose(0, 2, 3, 1)


class FeatureClassifier:
    """The evaluation classifier of one dataset, run through ONNX Runtime."""

    def __init__(self, factory: SessionFactory, dataset: str, path: Path | None = None) -> None:
        path = path or classifier_path(dataset)
        card_path = path.with_name("card.json")
        if not path.is_file() or not card_path.is_file():
            raise StudioError(f"no evaluation classifier for {dataset!r} at {path.parent}")
        self.card: dict[str, Any] = json.loads(card_path.read_text(encoding="utf-8"))
        graph = GraphSpec("default", path.name, self.card["sha256"],
                          outputs={"logits": ("batch", len(self.card.get("classes", [])) or "n"),
                                   "features": ("batch", "f")})  # fmt: skip
        self.session = factory.session(path, graph)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits and penultimate features for uint8 images."""
        logits, feats = [], []
        for start in range(0, len(images), BATCH):
            lo, fe = self.session.run({"image": to_input(images[start : start + BATCH])},
                                      ["logits", "features"])  # fmt: skip
            logits.append(lo)
            feats.append(fe)
        return np.concatenate(logits), np.concatenate(feats)


CLASS_DATASETS = ("fashion", "cifar10")  # the datasets with an evaluation classifier


@dataclass(frozen=True)
class EvalSet:
    """What the sample-quality evaluation of a model trained on a class dataset reads: the
    dataset's train and test splits and its evaluation classifier."""

    name: str
    train: ImageSet
    test: ImageSet
    classifier: FeatureClassifier

    @classmethod
    def for_model(
        cls, ctx: PluginContext, data: Path | None = None, classifier: Path | None = None
    ) -> EvalSet:
        """The set for ``ctx``'s model (its manifest's ``dataset``); ``data`` and
        ``classifier`` replace the default locations."""
        plugin = ctx.record.id
        if ctx.model is None:
            raise JobError(f"the {plugin} plugin has no model to evaluate")
        name = str(ctx.model.extras.get("dataset", ""))
        if name not in CLASS_DATASETS:
            raise JobError(f"no evaluation data and classifier for dataset {name!r}")
        train = datasets.load(name, "train", data)
        test = datasets.load(name, "test", data)
        return cls(name, train, test, FeatureClassifier(ctx.studio.factory, name, classifier))

    def scores(self, samples: np.ndarray, requested: np.ndarray | None) -> dict[str, Any]:
        """:func:`evaluate_images` on this set, with what was evaluated against."""
        out = evaluate_images(samples, requested, self.train, self.test, self.classifier)
        out.update({
            "dataset": self.name,
            "data_source": self.train.source,
            "split": "test",
            "classifier_sha256": self.classifier.card["sha256"],
        })  # fmt: skip
        return out


def evaluate_images(
    samples: np.ndarray,
    requested: np.ndarray | None,
    train: ImageSet,
    test: ImageSet,
    classifier: FeatureClassifier,
    n_ref: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """All the sample-quality numbers for uint8 ``samples`` (labels ``requested`` if the model
    was asked for classes).  The floor is the FD between real train and test images; the naive
    baseline draws each pixel from its own Gaussian fitted to the training set."""
    rng = np.random.default_rng(seed)
    sub = train.images[rng.choice(len(train), size=min(n_ref, len(train)), replace=False)]
    test_logits, test_feats = classifier(test.images)
    _, train_feats = classifier(sub)
    sample_logits, sample_feats = classifier(samples)
    pixels = train.images.astype(np.float32)
    baseline = rng.normal(pixels.mean(0), pixels.std(0), size=(len(samples), *pixels.shape[1:]))
    _, base_feats = classifier(np.clip(baseline, 0, 255).astype(np.uint8))
    fd = frechet_distance(sample_feats, test_feats)
    floor = frechet_distance(train_feats, test_feats)
    out: dict[str, Any] = {
        "samples": len(samples),
        "fd": fd,
        "fd_floor": floor,
        "fd_ratio": fd / floor if floor > 0 else float("inf"),
        "fd_baseline": frechet_distance(base_feats, test_feats),
        "classifier_test_accuracy": float((test_logits.argmax(1) == test.labels).mean()),
    }
    if requested is not None:
        out["class_agreement"] = float((sample_logits.argmax(1) == requested).mean())

    def unit(x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32) / 255.0

    out.update(memorization_share(unit(samples), unit(train.images), unit(test.images)))
    return out
