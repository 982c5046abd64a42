"""`gdl-studio eval vae`: the test split's reconstruction error and negative ELBO (nats per
image), and, where the project has an evaluation classifier for the dataset (Fashion-MNIST),
the Fréchet distance of prior samples against the test set next to its train-vs-test floor
(the GAN plugin's evaluator, gdl_studio.core.image_eval).  numpy + ONNX Runtime."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from gdl_studio.core.datasets import DatasetError
from gdl_studio.core.errors import StudioError
from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.image_eval import FeatureClassifier, evaluate_images, to_input, to_uint8
from gdl_studio.core.jobs import TaskState
from gdl_studio.core.metrics import frechet_distance

from . import data as vae_data
from .compute import VaeModel

EVAL_SEED = 0
BATCH = 500
BINS = 256
CLASSIFIERS = ("fashion",)  # datasets with a shipped evaluation classifier (assets/eval/)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def discretized_logistic_nll(x: np.ndarray, loc: np.ndarray, log_scale: np.ndarray) -> np.ndarray:
    """-log P(x) per image (nats) of 8-bit images scaled to [-1, 1] under a logistic per
    pixel, each level a bin of width 2/255, the outer bins open (as the training loss)."""
    half = 1.0 / (BINS - 1)
    x, loc, log_scale = (np.asarray(a, np.float64) for a in (x, loc, log_scale))
    inv = np.exp(-log_scale)
    centred = x - loc
    upper, lower = inv * (centred + half), inv * (centred - half)
    log_cdf_upper = -_softplus(-upper)
    log_sf_lower = -_softplus(lower)
    mid = inv * centred
    log_pdf_mid = mid - log_scale - 2.0 * _softplus(mid) + math.log(2 * half)
    with np.errstate(divide="ignore", over="ignore"):
        diff = 1.0 / (1.0 + np.exp(-upper)) - 1.0 / (1.0 + np.exp(-lower))
        log_diff = np.where(diff > 1e-5, np.log(np.maximum(diff, 1e-12)), log_pdf_mid)
    logp = np.where(
        x < -1.0 + half, log_cdf_upper, np.where(x > 1.0 - half, log_sf_lower, log_diff)
    )
    return -logp.reshape(len(x), -1).sum(1)


def kl_divergence(mean: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """KL(q(z|x) || N(0, I)) per image, in nats."""
    return 0.5 * (mean**2 + np.exp(logvar) - 1.0 - logvar).sum(1)


def score_test_set(model: VaeModel, images: np.ndarray, seed: int = EVAL_SEED) -> dict[str, Any]:
    """Negative ELBO (one posterior sample per image, seeded), its two terms, and the pixel
    MSE (0..1 scale) of each image's reconstruction from its posterior mean."""
    rng = np.random.default_rng(seed)
    recon_nll, kl, mse, recons = [], [], [], []
    for start in range(0, len(images), BATCH):
        part = images[start : start + BATCH]
        x = to_input(part)
        mean, logvar = model.encode(part)
        z = mean + np.exp(0.5 * logvar) * rng.standard_normal(mean.shape)
        loc, log_scale = model.decode_full(z)
        recon_nll.append(discretized_logistic_nll(x, loc, log_scale))
        kl.append(kl_divergence(mean, logvar))
        recon = to_uint8(model.decode(mean))
        recons.append(recon)
        err = (recon.astype(np.float64) - part.astype(np.float64)) / 255.0
        mse.append((err**2).reshape(len(part), -1).mean(1))
    nll, k = np.concatenate(recon_nll), np.concatenate(kl)
    dims = int(np.prod(images.shape[1:]))
    neg_elbo = float((nll + k).mean())
    return {
        "recon_error": float(np.concatenate(mse).mean()),
        "elbo_nats": neg_elbo,
        "recon_nll_nats": float(nll.mean()),
        "kl_nats": float(k.mean()),
        "bits_per_dim": neg_elbo / (dims * math.log(2)),
        "test_images": len(images),
        "_recons": np.concatenate(recons),
    }


def prior_samples(
    model: VaeModel, n: int, seed: int = EVAL_SEED, fitted: bool = False
) -> np.ndarray:
    """``n`` uint8 images decoded from z ~ N(0, I), the model's prior; with ``fitted`` from
    the Gaussian the map is framed on (the training encodings' mean and spread, a 2-D
    latent only): how much of the gap is the prior's mismatch rather than the decoder."""
    z = np.random.default_rng(seed).standard_normal((n, model.latent))
    if fitted:
        z = model.projection.lift(z)
    state = TaskState()
    return np.concatenate(
        [to_uint8(model.decode(z[s : s + BATCH], state)) for s in range(0, n, BATCH)]
    )


def evaluate(
    ctx: PluginContext,
    data: Path | None = None,
    samples: int = 10_000,
    classifier: Path | None = None,
) -> dict[str, Any]:
    if ctx.model is None:
        raise JobError("the vae plugin has no model to evaluate")
    t0 = time.perf_counter()
    model = VaeModel(ctx)
    name = str(model.extras.get("dataset", "folder"))
    try:
        train = vae_data.load(name, "train", data, model.size)
        test = vae_data.load(name, "test", data, model.size)
    except DatasetError as exc:
        raise JobError(f"eval vae needs the {name} data: {exc}") from None
    scores = score_test_set(model, test.images)
    recons = scores.pop("_recons")
    out: dict[str, Any] = {"dataset": name, "data_source": test.source, "split": "test", **scores}
    if name in CLASSIFIERS or classifier is not None:
        try:
            clf = FeatureClassifier(ctx.studio.factory, name, classifier)
        except StudioError as exc:
            raise JobError(f"eval vae: {exc}") from None
        generated = prior_samples(model, samples)
        out.update(evaluate_images(generated, None, train, test, clf))
        _, recon_feats = clf(recons)
        _, test_feats = clf(test.images)
        out["fd_recon"] = frechet_distance(recon_feats, test_feats)
        if model.latent == 2 and "projection" in model.extras:
            _, fitted_feats = clf(prior_samples(model, samples, fitted=True))
            out["fd_fitted"] = frechet_distance(fitted_feats, test_feats)
        out["classifier_sha256"] = clf.card["sha256"]
    else:
        out.update(
            fd=None,
            fd_floor=None,
            fd_note=(
                f"no evaluation classifier for {name!r}: the Fréchet distance needs one "
                "(assets/eval/<dataset>-classifier), and the ORL faces' 80 test images "
                "are too few for a stable one"
            ),
        )
    out["eval_seconds"] = round(time.perf_counter() - t0, 1)
    return out
