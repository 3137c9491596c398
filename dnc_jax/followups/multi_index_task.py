"""The multi-index follow-up's task: ``y = h(U x) + noise`` with a hidden ``r``-dimensional
subspace ``U`` (``multi_index_regression``), its links and the coherence of ``U``."""

from __future__ import annotations

import numpy as np

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
