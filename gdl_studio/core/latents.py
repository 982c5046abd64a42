"""What the image generators share about their starting points: the noise or latent of one
seed, the class of each image of a batch, and interpolation between two seeds."""

from __future__ import annotations

import numpy as np

from gdl_studio.core.host import JobError


def labels_for(choice: str, seeds: list[int], classes: list[str]) -> np.ndarray | None:
    """The class index of each image for the panel's class choice: "one of each" (classes in
    turn), "any" (a random class per image, drawn from a stream of the seed's own so that the
    label never changes the latent), or a class name.  None for a model without classes."""
    if not classes:
        return None
    n = len(classes)
    if choice == "one of each":
        return np.arange(len(seeds)) % n
    if choice == "any":
        return np.array([np.random.default_rng([s, 1]).integers(n) for s in seeds])
    if choice not in classes:
        raise JobError(f"class {choice!r} is not one of {', '.join(classes)}")
    return np.full(len(seeds), classes.index(choice))


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation; falls back to linear when a and b are (anti)parallel.  For
    Gaussian latents it keeps every frame at the norm such a latent has."""
    a_flat, b_flat = a.ravel(), b.ravel()
    na, nb = np.linalg.norm(a_flat), np.linalg.norm(b_flat)
    cos = float(np.clip(a_flat @ b_flat / (na * nb), -1.0, 1.0)) if na and nb else 1.0
    omega = np.arccos(cos)
    if np.sin(omega) < 1e-6:
        return (1 - t) * a + t * b
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)
