"""Fréchet distance and memorisation share on data whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from gdl_studio.core.metrics import frechet_distance, memorization_share, nearest_distances


def test_frechet_distance_of_gaussians_matches_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(20000, 3))
    b = rng.normal(1.0, 2.0, size=(20000, 3))
    # Diagonal covariances: |mu|^2 + sum(s_a^2 + s_b^2 - 2 s_a s_b) = 3 + 3 * (1 + 4 - 4) = 6.
    assert frechet_distance(a, b) == pytest.approx(6.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a[::-1] + 0.0) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_is_symmetric_and_handles_rank_deficient_covariances() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(50, 64))  # fewer rows than features: singular covariance
    b = rng.normal(size=(50, 64)) + 0.5
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)
    assert np.isfinite(frechet_distance(a, b))
    with pytest.raises(ValueError):
        frechet_distance(a, b[:, :10])


def test_nearest_distances_against_brute_force() -> None:
    rng = np.random.default_rng(2)
    q, r = rng.normal(size=(37, 5)), rng.normal(size=(53, 5))
    d, i = nearest_distances(q, r, chunk=8)
    brute = np.linalg.norm(q[:, None] - r[None], axis=2)
    np.testing.assert_allclose(d, brute.min(1), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(i, brute.argmin(1))


def test_memorization_share_flags_copies_but_not_fresh_samples() -> None:
    rng = np.random.default_rng(3)
    train = rng.normal(size=(2000, 16))
    test = rng.normal(size=(500, 16))
    fresh = rng.normal(size=(500, 16))
    copies = train[:500] + rng.normal(scale=1e-3, size=(500, 16))
    assert memorization_share(fresh, train, test)["memorization_share"] <= 0.03
    assert memorization_share(copies, train, test)["memorization_share"] == 1.0
