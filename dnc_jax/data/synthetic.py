"""Synthetic tasks: a Gaussian mixture, modular arithmetic, multi-index models."""

from __future__ import annotations

import numpy as np


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


MODULAR_OPS = {
    "+": lambda a, b, p: (a + b) % p,
    "-": lambda a, b, p: (a - b) % p,
    "*": lambda a, b, p: (a * b) % p,
    "/": lambda a, b, p: (a * pow_mod_inverse(b, p)) % p,
}


def pow_mod_inverse(b: np.ndarray, p: int) -> np.ndarray:
    """Modular inverse of each ``b`` modulo prime ``p`` (Fermat: ``b^(p-2) mod p``)."""
    return np.asarray([pow(int(v), p - 2, p) for v in np.asarray(b).ravel()]).reshape(np.shape(b))


def modular_arithmetic(
    p: int = 61, op: str = "+", train_fraction: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The grokking task ``(a op b) mod p`` on all pairs, inputs as concatenated one-hots.

    Returns ``(X_train, y_train, X_test, y_test)``: ``X`` is ``(pairs, 2p)`` float32, ``y`` in
    ``0..p-1``; for ``/`` pairs with ``b = 0`` are left out (``p`` must be prime).
    """
    if op not in MODULAR_OPS:
        raise ValueError(f"op must be one of {tuple(MODULAR_OPS)}; got {op!r}.")
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1); got {train_fraction}.")
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    a, b = a.ravel(), b.ravel()
    if op == "/":
        a, b = a[b != 0], b[b != 0]
    y = MODULAR_OPS[op](a, b, p).astype(np.int64)
    X = np.zeros((len(a), 2 * p), dtype=np.float32)
    X[np.arange(len(a)), a] = 1.0
    X[np.arange(len(a)), p + b] = 1.0
    order = np.random.default_rng(seed).permutation(len(a))
    cut = int(round(train_fraction * len(a)))
    return X[order[:cut]], y[order[:cut]], X[order[cut:]], y[order[cut:]]


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


MULTI_INDEX_INPUTS = ("hypercube", "gaussian")
MULTI_INDEX_SUBSPACES = ("random", "coordinate")
MULTI_INDEX_TARGETS = ("pairs_prod", "sum_prod")


def multi_index_target(Z: np.ndarray, target: str = "pairs_prod") -> np.ndarray:
    """The link ``h`` of the multi-index model on ``Z = X U^T`` (``(n, r)``), float64.

    - ``"pairs_prod"``: ``h(z) = sum_{i<j} z_i z_j + prod_i z_i``. Its degree-2 part carries
      every direction of the subspace (its gradients' second moment under ``z ~ N(0, I_r)``
      is ``(r - 2) 11^T + I``, full rank), while the whole target has degree ``r``: the
      regime of Zhu, Davis, Drusvyatskiy and Fazel (arXiv 2605.15082, abstract), where a
      degree-``p`` part carries all directions and the AGOP recovers the subspace from
      ``n ~ d^(p + delta)`` samples, fewer than the ``d^(p*)`` prediction needs.
    - ``"sum_prod"``: ``h(z) = sum_i z_i + prod_i z_i``; its degree-1 part carries a single
      direction, ``sum_i u_i``.

    NumPy, a shell call (the data are made on the host).
    """
    Z = np.asarray(Z, np.float64)
    if target == "sum_prod":
        return Z.sum(axis=1) + Z.prod(axis=1)
    if target == "pairs_prod":
        s = Z.sum(axis=1)
        return 0.5 * (s**2 - (Z**2).sum(axis=1)) + Z.prod(axis=1)
    raise ValueError(f"target must be one of {MULTI_INDEX_TARGETS}; got {target!r}.")


def coherence(U: np.ndarray) -> float:
    """``(d / r) max_a ||U[:, a]||^2`` of an ``(r, d)`` matrix with orthonormal rows: 1 when
    every coordinate holds an equal share of ``span(U^T)`` (incoherent), ``d / r`` when the
    subspace is spanned by coordinates. A random ``U`` has coherence ``O(log d)``. NumPy."""
    U = np.asarray(U, np.float64)
    r, d = U.shape
    return float(d / r * np.max(np.sum(U**2, axis=0)))


def multi_index_regression(
    n: int, d: int, r: int = 3, *, inputs: str = "hypercube", subspace: str = "random",
    target: str = "pairs_prod", noise: float = 0.1, seed: int = 0, sample_seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The multi-index regression ``y = h(U x) + noise`` (``h``: ``multi_index_target``).

    ``inputs``: ``x`` uniform on the hypercube ``{-1, +1}^d`` or ``N(0, I_d)``.
    ``subspace="random"``: ``U`` an ``r x d`` matrix with orthonormal rows drawn with
    ``seed`` (low coherence, as the AGOP recovery theory of arXiv 2605.15082 assumes);
    ``"coordinate"``: the first ``r`` coordinates (the most coherent choice; on the
    hypercube ``z_i = +-1``, so ``z1 z2 z3`` is a function of ``z1 + z2 + z3`` and, with
    ``target="sum_prod"``, the central subspace degenerates to one line). ``noise`` is the
    standard deviation of the Gaussian label noise; ``sample_seed`` (default ``seed``)
    draws the samples.

    Returns ``(X (n, d) float32, y (n,) float32, U (r, d) float64)``.
    """
    for name, value, allowed in (("inputs", inputs, MULTI_INDEX_INPUTS),
                                 ("subspace", subspace, MULTI_INDEX_SUBSPACES),
                                 ("target", target, MULTI_INDEX_TARGETS)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}; got {value!r}.")
    if not 1 <= r <= d:
        raise ValueError(f"multi_index_regression needs 1 <= r <= d; got r={r}, d={d}.")
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}.")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0; got {noise}.")
    if subspace == "coordinate":
        U = np.eye(d)[:r]
    else:
        U = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, r)))[0].T
    rng = np.random.default_rng([seed, 7, 0 if sample_seed is None else 1 + sample_seed])
    if inputs == "hypercube":
        X = rng.choice(np.array([-1.0, 1.0]), size=(n, d))
    else:
        X = rng.standard_normal((n, d))
    y = multi_index_target(X @ U.T, target) + noise * rng.standard_normal(n)
    return X.astype(np.float32), y.astype(np.float32), U


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
