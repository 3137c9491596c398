"""Synthetic tasks: a Gaussian mixture and a multi-index classification task; the
follow-ups' tasks (modular arithmetic, multi-index regression) are theirs and are read
here by name."""

from __future__ import annotations

import numpy as np

from dnc_jax.followups.modular_task import modular_arithmetic


def gaussian_mixture(
    n: int = 2000,
    d: int = 20,
    num_classes: int = 4,
    separation: float = 3.0,
    seed: int = 0,
    sample_seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic unit-variance Gaussian classes whose means are ``separation`` apart.

    Means are ``separation / sqrt(2)`` times random orthonormal vectors (so pairwise mean
    distances equal ``separation``); labels cycle through the classes (balanced).
    ``seed`` draws the means, ``sample_seed`` (default ``seed``) the samples, so that a
    train and a test set share one mixture. Needs ``d >= num_classes``.
    """
    if d < num_classes:
        raise ValueError(f"gaussian_mixture needs d >= num_classes; got d={d}, C={num_classes}.")
    basis, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, num_classes)))
    means = separation / np.sqrt(2.0) * basis.T
    rng = np.random.default_rng([seed, 1 if sample_seed is None else 2 + sample_seed])
    y = rng.permutation(np.arange(n) % num_classes)
    X = means[y] + rng.standard_normal((n, d))
    return X.astype(np.float32), y.astype(np.int64)


def multi_index(
    n: int = 2000, d: int = 20, k: int = 3, seed: int = 0, sample_seed: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A multi-index classification task ``y = argmax_j (U x)_j`` with a hidden ``U``.

    ``x ~ N(0, I_d)``, ``U`` is ``(k, d)`` with orthonormal rows; labels depend on ``x``
    only through the ``k``-dimensional subspace spanned by ``U`` (for subspace-recovery
    checks: the AGOP of a good predictor concentrates on ``span(U^T)``). ``seed`` draws
    ``U``, ``sample_seed`` (default ``seed``) the samples.

    Returns ``(X (n, d) float32, y (n,) in 0..k-1, U (k, d) float64)``.
    """
    if not 2 <= k <= d:
        raise ValueError(f"multi_index needs 2 <= k <= d; got k={k}, d={d}.")
    U = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, k)))[0].T
    rng = np.random.default_rng([seed, 1 if sample_seed is None else 2 + sample_seed])
    X = rng.standard_normal((n, d))
    y = np.argmax(X @ U.T, axis=1)
    return X.astype(np.float32), y.astype(np.int64), U


def _synthetic(name: str, split: str, n: int | None, seed: int, options: dict):
    if name == "modular_arithmetic":
        X_tr, y_tr, X_te, y_te = modular_arithmetic(seed=seed, **options)
        parts = {"train": (X_tr, y_tr), "test": (X_te, y_te)}
        parts["all"] = (np.concatenate([X_tr, X_te]), np.concatenate([y_tr, y_te]))
        return parts[split]
    count = n or 2000
    # one task per seed; train and test are independent samples of it ("all" = train)
    sample_seed = 1 if split == "test" else 0
    if name == "gaussian_mixture":
        return gaussian_mixture(count, seed=seed, sample_seed=sample_seed, **options)
    X, y, _ = multi_index(count, seed=seed, sample_seed=sample_seed, **options)
    return X, y
