"""Sample-quality measures shared by the image plugins' evaluators (numpy only).

- Fréchet distance between two sets of feature vectors (the FID formula, on the features of
  our own independent classifier rather than Inception, which is not available offline).
- Memorisation ("Rule 2" of Foster's first chapter: a sample must not copy the training data):
  the share of samples whose nearest training image is closer than the 1st percentile of the
  test images' nearest-training-image distances.
"""

from __future__ import annotations

import numpy as np


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` for feature rows ``a``, ``b``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError("features must be 2-D with the same width")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr((S_a S_b)^(1/2)) = sum of sqrt(eigenvalues of S_a^(1/2) S_b S_a^(1/2)), which is
    # symmetric positive semi-definite: eigh is exact and stable where a general sqrtm is not.
    root_a = _sqrt_psd(cov_a)
    middle = root_a @ cov_b @ root_a
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_sqrt = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt)


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def nearest_distances(
    queries: np.ndarray, refs: np.ndarray, chunk: int = 2048, exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance from each query row to its nearest reference row, and that row's
    index.  Chunked matrix products keep memory bounded (10k x 60k takes seconds)."""
    q = np.asarray(queries, dtype=np.float32).reshape(len(queries), -1)
    r = np.asarray(refs, dtype=np.float32).reshape(len(refs), -1)
    r_sq = (r * r).sum(1)
    best = np.empty(len(q), dtype=np.float32)
    index = np.empty(len(q), dtype=np.int64)
    for start in range(0, len(q), chunk):
        block = q[start : start + chunk]
        d2 = (block * block).sum(1)[:, None] - 2 * block @ r.T + r_sq[None, :]
        if exclude_self:
            rows = np.arange(len(block))
            d2[rows, start + rows] = np.inf
        i = d2.argmin(1)
        index[start : start + chunk] = i
        best[start : start + chunk] = np.sqrt(np.maximum(d2[np.arange(len(block)), i], 0))
    return best, index


def memorization_share(
    samples: np.ndarray, train: np.ndarray, test: np.ndarray, percentile: float = 1.0
) -> dict[str, float]:
    """Share of samples nearer to a training image than ``percentile`` % of test images are.

    By construction the test set itself scores ``percentile`` / 100, so a model that does not
    copy its training data should not score above it.
    """
    test_d, _ = nearest_distances(test, train)
    threshold = float(np.percentile(test_d, percentile))
    sample_d, _ = nearest_distances(samples, train)
    return {
        "memorization_share": float((sample_d < threshold).mean()),
        "memorization_threshold": threshold,
        "memorization_reference_share": float((test_d < threshold).mean()),
        "sample_nn_distance_median": float(np.median(sample_d)),
        "test_nn_distance_median": float(np.median(test_d)),
    }
