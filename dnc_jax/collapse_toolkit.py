"""The collapse metrics of the neural-collapse toolkit (``rhubarbwu/neural-collapse``, used
on language models' vocabularies of ~30,000 token classes), in memory ``O(C d)``.

Every function works from class means (``(C, d)``) and per-class statistics, never a
``C x C`` matrix: pairwise quantities run over square tiles of classes (``tile`` rows at a
time, the last tile padded and masked), summed in float64 on the host. The formulas are
those of the toolkit's ``neural_collapse/measure.py`` and ``kernels.py`` (commit c05a0b8):

- ``hyperspherical_uniformity`` (GNC2, Liu et al. 2023, arXiv 2303.06484): the mean and
  variance over class pairs ``i < j`` of a kernel of the normalised centred means
  ``u_c = (mu_c - mu_G) / (||mu_c - mu_G|| + eps)``: ``"dist"`` ``||u_i - u_j||``, ``"log"``
  ``log ||u_i - u_j||^-1``, ``"riesz"`` ``sign(s) ||u_i - u_j||^-s`` with ``s = d - 2``
  (``kernel_stats``, ``dist_kernel``, ``log_kernel``, ``riesz_kernel``; the variance
  divides by the number of pairs, ``symm_reduce``);
- ``uniform_duality`` (UNC3): the variance (``n - 1``, ``torch.var``) over classes of
  ``w_c . (mu_c - mu_G)`` (``similarities(W, M, mG).var()``);
- ``ncc_agreement`` (NC4, on any data, held-out included): the share of rows where the
  linear classifier's ``argmax_c x . w_c`` equals the nearest class mean's
  ``argmin_c ||x - mu_c||`` (``DecAccumulator``, ``clf_ncc_agreement`` weighted by class);
- ``ood_orthogonality`` (NC5, Ammar et al. 2024, arXiv 2310.06823): the mean over classes
  of ``|cos(mu_c, mu_ood)|`` for the mean ``mu_ood`` of out-of-distribution features
  (``orthogonality_deviation``; the means as given: centre them first for the paper's
  centred form);
- ``tiled_cdnv``: our ``CollapseMetrics.cdnv`` (Galanti et al.: the mean over pairs of
  ``(v_i + v_j) / (2 ||mu_i - mu_j||^2)``, ``v_c`` the mean squared distance of class
  ``c``'s rows to their mean), tiled (the toolkit's ``variability_cdnv``, ``dist_exp=1``).

``mu_G`` is the plain mean of the class means (the toolkit's ``MeanAccumulator.compute``
default, and ours). ``class_moments`` streams features once (``class_statistics``) for
the counts, means and ``v_c`` of very many classes. These are shell functions (host loops
over tiles and chunks): call them eagerly.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from dnc_jax import _checks, class_statistics
from dnc_jax.collapse import DEFAULT_CHUNK, _checked_blocks
from dnc_jax.precision import matmul

UNIFORMITY_KERNELS = ("dist", "log", "riesz")
DEFAULT_TILE = 2048


class ClassMoments(NamedTuple):
    """Per-class ``counts`` (``(C,)``), ``means`` (``(C, d)``) and ``variances`` (``(C,)``,
    the mean of ``||h_i - mu_c||^2`` over the class's rows), float64."""

    counts: np.ndarray
    means: np.ndarray
    variances: np.ndarray


_update = jax.jit(class_statistics.update)


def class_moments(features: ArrayLike, labels: ArrayLike, *, num_classes: int | None = None,
                  chunk_size: int | None = None) -> ClassMoments:
    """``ClassMoments`` of ``features`` (``(n, d)`` array or ``Rows``) grouped by ``labels``
    in one streaming pass (``class_statistics.update`` per chunk), in memory
    ``O(chunk_size d + C d)`` and time ``O(n d)``. Every class must occur. A shell function
    (host loop over chunks): call it eagerly, or accumulate ``ClassStatistics`` yourself."""
    source = _checked_blocks(features, labels, None, num_classes, int(chunk_size or DEFAULT_CHUNK))
    C, counts = source.num_classes, source.counts
    if (counts == 0).any():
        raise ValueError(f"Classes {np.flatnonzero(counts == 0)[:10].tolist()} have no samples; "
                         "pass num_classes matching the labels present.")
    stats = class_statistics.ClassStatistics.zeros(C, source.d, source.dtype)
    for H, y, _ in source.blocks():
        stats = _update(stats, H, y)
    if not bool(stats.valid):
        raise ValueError("features contain NaN or infinite values; clean them before measuring.")
    return ClassMoments(counts, np.asarray(stats.means, np.float64),
                        np.asarray(stats.m2, np.float64) / counts)


def _checked_means(name: str, means: ArrayLike, min_classes: int = 2) -> np.ndarray:
    """``means`` as a finite 2-D host array of the float dtype the policy gives it."""
    M_dev = _checks.as_float_matrix(name, means, dtype=None)
    if M_dev.shape[0] < min_classes:
        raise ValueError(f"{name} must have at least {min_classes} rows (classes); "
                         f"got {M_dev.shape}.")
    _checks.check_finite(name, M_dev)
    return np.asarray(M_dev)


def _tiles(C: int, tile: int):
    """Row ranges ``(start, stop)`` of the class tiles."""
    if int(tile) < 1:
        raise ValueError(f"tile must be a positive integer; got {tile}.")
    return [(s, min(s + int(tile), C)) for s in range(0, C, int(tile))]


def _padded(A: np.ndarray, start: int, stop: int, tile: int, dtype) -> tuple[jax.Array, jax.Array]:
    """Rows ``start:stop`` of ``A`` padded to ``tile`` rows, and the mask of real rows (a
    fixed tile shape: one compiled program for every tile)."""
    block = np.zeros((tile, A.shape[1]), dtype=dtype)
    block[: stop - start] = A[start:stop]
    return jnp.asarray(block), jnp.arange(tile) < stop - start


def _pair_tile(Ui, Uj, mask_i, mask_j, same):
    """Squared distances between the rows of two tiles and the mask of the pairs counted:
    real rows only, and on a diagonal tile (``same``) only ``i < j``."""
    sq = (jnp.sum(Ui * Ui, axis=1)[:, None] + jnp.sum(Uj * Uj, axis=1)[None, :]
          - 2.0 * matmul(Ui, Uj.T))
    pairs = mask_i[:, None] & mask_j[None, :]
    upper = jnp.arange(Ui.shape[0])[:, None] < jnp.arange(Uj.shape[0])[None, :]
    return jnp.maximum(sq, 0.0), pairs & (~same | upper)


def _upper_tile_pairs(blocks: list):
    """The tile pairs ``(i <= j)`` of ``blocks``, with whether each is a diagonal tile."""
    for i, bi in enumerate(blocks):
        for j in range(i, len(blocks)):
            yield bi, blocks[j], jnp.asarray(i == j)


@functools.partial(jax.jit, static_argnames=("kernel",))
def _kernel_tile_sums(Ui, Uj, mask_i, mask_j, same, shift, exponent, kernel: str):
    """``(count, sum (k - shift), sum (k - shift)^2)`` of the pair kernel over the counted
    pairs of two tiles."""
    sq, pairs = _pair_tile(Ui, Uj, mask_i, mask_j, same)
    dist = jnp.sqrt(sq)
    safe = jnp.where(pairs, dist, 1.0)
    if kernel == "dist":
        k = dist
    elif kernel == "log":
        k = -jnp.log(safe)
    else:  # riesz: sign(s) ||.||^-s
        k = jnp.sign(exponent) * safe ** (-exponent)
    k = jnp.where(pairs, k - shift, 0.0)
    return jnp.sum(pairs), jnp.sum(k), jnp.sum(k * k)


def hyperspherical_uniformity(means: ArrayLike, *, kernel: str = "log",
                              tile: int = DEFAULT_TILE) -> tuple[float, float]:
    """GNC2: ``(mean, variance)`` of ``kernel`` over the pairs of normalised centred class
    means (module docstring), in tiles of ``tile`` classes (memory ``O(tile^2 + C d)``).
    Computed in the means' dtype (float64 when given float64 with 64-bit JAX), summed in
    float64. A shell function (host loop over tiles): call it eagerly."""
    if kernel not in UNIFORMITY_KERNELS:
        raise ValueError(f"kernel must be one of {UNIFORMITY_KERNELS}; got {kernel!r}.")
    M = _checked_means("means", means)
    dtype = jax.dtypes.canonicalize_dtype(M.dtype)
    centred = M - M.mean(axis=0)
    U = centred / (np.linalg.norm(centred, axis=1, keepdims=True) + np.finfo(dtype).eps)
    C, d = U.shape
    tiles, size = _tiles(C, tile), min(int(tile), C)
    exponent = jnp.asarray(d - 2, dtype)
    blocks = [_padded(U, a, b, size, dtype) for a, b in tiles]
    # a rough centre for stable sums: the mean over the first tile pair
    U0, m0 = blocks[0]
    n0, s0, _ = _kernel_tile_sums(U0, U0, m0, m0, jnp.asarray(True), jnp.asarray(0.0, dtype),
                                  exponent, kernel)
    shift = float(s0) / max(int(n0), 1)
    count, total, total_sq = 0, 0.0, 0.0
    for (Ui, mi), (Uj, mj), same in _upper_tile_pairs(blocks):
        n, s, s2 = _kernel_tile_sums(Ui, Uj, mi, mj, same, jnp.asarray(shift, dtype), exponent,
                                     kernel)
        count += int(n)
        total += float(s)
        total_sq += float(s2)
    mean_shifted = total / count
    return shift + mean_shifted, total_sq / count - mean_shifted**2


def uniform_duality(classifier: ArrayLike, means: ArrayLike) -> float:
    """UNC3: the variance (``n - 1``) over classes of ``w_c . (mu_c - mu_G)`` (host numpy,
    float64: call it eagerly)."""
    M = _checked_means("means", means)
    W = np.asarray(_checks.as_float_matrix("classifier", classifier, dtype=None), np.float64)
    if W.shape != M.shape:
        raise ValueError(f"classifier must have the means' shape {M.shape}; got {W.shape}.")
    dots = np.sum(W * (M - M.mean(axis=0)), axis=1, dtype=np.float64)
    return float(np.var(dots, ddof=1))


@jax.jit
def _agreement_block(X, valid, W, means, mean_sq):
    linear = jnp.argmax(matmul(X, W.T), axis=1)
    ncc = jnp.argmin(mean_sq[None, :] - 2.0 * matmul(X, means.T), axis=1)
    return jnp.sum((linear == ncc) & valid)


def ncc_agreement(features: ArrayLike, classifier: ArrayLike, means: ArrayLike, *,
                  chunk_size: int = 1024) -> float:
    """NC4 on any rows (held-out included): the share of ``features`` (``(n, d)``) where
    ``argmax_c x . w_c`` equals ``argmin_c ||x - mu_c||`` (``means``: the training class
    means), in chunks of ``chunk_size`` rows (memory ``O(chunk_size C + C d)``). A shell
    function (host loop over chunks): call it eagerly."""
    M = _checked_means("means", means)
    W = np.asarray(_checks.as_float_matrix("classifier", classifier, dtype=None))
    if W.shape != M.shape:
        raise ValueError(f"classifier must have the means' shape {M.shape}; got {W.shape}.")
    X_dev = _checks.as_float_matrix("features", features, dtype=None)
    if X_dev.shape[1] != M.shape[1]:
        raise ValueError(f"features have {X_dev.shape[1]} columns but the means {M.shape[1]}.")
    _checks.check_finite("features", X_dev)
    X = np.asarray(X_dev)
    dtype = jax.dtypes.canonicalize_dtype(X.dtype)
    Wd, Md = jnp.asarray(W, dtype), jnp.asarray(M, dtype)
    mean_sq = jnp.sum(Md * Md, axis=1)
    hits = 0
    size = min(int(chunk_size), X.shape[0])
    for start in range(0, X.shape[0], size):
        block, valid = _padded(X, start, min(start + size, X.shape[0]), size, dtype)
        hits += int(_agreement_block(block, valid, Wd, Md, mean_sq))
    return hits / X.shape[0]


def ood_orthogonality(means: ArrayLike, ood_mean: ArrayLike) -> float:
    """NC5: the mean over classes of ``|cos(mu_c, mu_ood)|`` (``means`` ``(C, d)``,
    ``ood_mean`` ``(d,)``; host numpy, float64: call it eagerly)."""
    M = np.asarray(_checked_means("means", means, min_classes=1), np.float64)
    o = np.asarray(ood_mean, np.float64).reshape(-1)
    if o.shape != (M.shape[1],) or not np.isfinite(o).all() or not np.linalg.norm(o) > 0:
        raise ValueError(f"ood_mean must be a finite nonzero ({M.shape[1]},) vector; got "
                         f"shape {np.shape(ood_mean)}.")
    cos = (M @ o) / (np.linalg.norm(M, axis=1) * np.linalg.norm(o))
    return float(np.mean(np.abs(cos)))


@jax.jit
def _cdnv_tile_sums(Mi, Mj, vi, vj, mask_i, mask_j, same):
    sq, pairs = _pair_tile(Mi, Mj, mask_i, mask_j, same)
    ratio = (vi[:, None] + vj[None, :]) / (2.0 * jnp.where(pairs, sq, 1.0))
    return jnp.sum(jnp.where(pairs, ratio, 0.0)), jnp.sum(pairs)


def tiled_cdnv(means: ArrayLike, variances: ArrayLike, *, tile: int = DEFAULT_TILE) -> float:
    """CDNV from class means (``(C, d)``) and variances (``(C,)``, ``ClassMoments``), in
    tiles of ``tile`` classes: equal to ``collapse_metrics(...).cdnv`` without its
    ``C x C`` matrices. Means are centred first (the distances do not change). A shell
    function (host loop over tiles): call it eagerly."""
    M = _checked_means("means", means)
    v = np.asarray(variances, np.float64).reshape(-1)
    if v.shape != (M.shape[0],) or not np.isfinite(v).all() or (v < 0).any():
        raise ValueError(f"variances must be ({M.shape[0]},) finite and >= 0; got "
                         f"shape {np.shape(variances)}.")
    dtype = jax.dtypes.canonicalize_dtype(M.dtype)
    centred = M - M.mean(axis=0)
    C = centred.shape[0]
    tiles, size = _tiles(C, tile), min(int(tile), C)
    blocks = [(*_padded(centred, a, b, size, dtype), _padded(v[:, None], a, b, size, dtype)[0][:, 0])
              for a, b in tiles]
    total, count = 0.0, 0
    for (Mi, mi, vi), (Mj, mj, vj), same in _upper_tile_pairs(blocks):
        s, n = _cdnv_tile_sums(Mi, Mj, vi, vj, mi, mj, same)
        total += float(s)
        count += int(n)
    return total / count
