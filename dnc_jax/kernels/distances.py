"""Squared distances in an optional metric ``M``, as the kernels need them.

Distances follow ``||x - z||_M^2 = x^T M x + z^T M z - 2 x^T M z`` (DESIGN.md, Kernels):
one matrix product, but its absolute error is about ``eps (x^T M x + z^T M z)``, so that in
float32 a squared distance between unit rows is only resolved down to ~1e-6 and a point
against itself gets round-off, not 0. For a kernel steep at 0 (the Laplace kernel, whose
value and gradient weight ``k / ||x - z||`` are steepest there), each row's ``NEAR_PAIRS`` nearest columns (by
the expansion) are recomputed by direct difference ``(x M - z M) . (x - z)``: exactly 0
for a point against itself or an exact duplicate, and near distances to relative
precision. Every other distance keeps the expansion, clamped at 0. Nothing else is
snapped to zero. The square root is taken through a double ``where`` so that its
derivative at 0 is 0 rather than NaN (the Laplace self term).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from dnc_jax.precision import matmul

# Columns per row whose squared distance the Laplace kernel recomputes by direct difference.
NEAR_PAIRS = 8


def squared_distances(
    X: jax.Array, Z: jax.Array, M: jax.Array | None = None, *, near: int = 0
) -> jax.Array:
    """Squared distances ``||x_i - z_j||_M^2`` by the expansion, clamped at 0.

    Args:
      X: ``(n, d)`` points.
      Z: ``(m, d)`` points.
      M: optional ``(d, d)`` PSD metric; identity when ``None``. Only its symmetric part
        ``(M + M^T) / 2`` defines a distance, and only it is used, so the gradient with
        respect to ``M`` is symmetric too: a gradient step stays among symmetric matrices
        (to keep ``M`` PSD as well, optimise a factor ``B`` with ``M = B B^T``).
      near: recompute each row's ``near`` smallest entries by direct difference (exact 0
        for identical rows; relative rather than absolute round-off), at ``O(n near d)``
        extra work and a top-``near`` selection over the ``(n, m)`` block.

    Returns:
      ``(n, m)`` array; NaN where a row of ``X`` or ``Z`` holds a NaN or an infinity.
    """
    XM, xx = _metric_rows(X, M)
    ZM, zz = _metric_rows(Z, M)
    d2 = xx[:, None] + zz[None, :] - 2.0 * matmul(XM, Z.T)
    return _refine(d2, X, XM, Z, ZM, near, M is not None)


def _metric_rows(X: jax.Array, M: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """``(X M, x^T M x per row)`` with ``M``'s symmetric part (``X`` itself when ``None``)."""
    XM = X if M is None else matmul(X, symmetric_part(M))
    return XM, jnp.sum(XM * X, axis=1)


def _refine(d2, X, XM, Z, ZM, near, metric):
    """The expansion ``d2`` (``(n, m)``) with each row's ``near`` nearest entries
    recomputed by direct difference, clamped at 0, NaN for an infinity."""
    k = min(int(near), Z.shape[0])
    if k > 0:
        idx = nearest_columns(jax.lax.stop_gradient(d2), k)
        diff = X[:, None, :] - Z[idx]
        diff_m = XM[:, None, :] - ZM[idx] if metric else diff
        d2 = d2.at[jnp.arange(X.shape[0])[:, None], idx].set(jnp.sum(diff_m * diff, axis=-1))
    # an infinite input (or an overflow) has no distance: NaN, not a kernel value of 0
    return jnp.where(jnp.isinf(d2), jnp.nan, jnp.maximum(d2, 0.0))


def symmetric_distance_fill(X: jax.Array, M: jax.Array | None, *, near: int, tile: int,
                            post: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """``post(squared_distances(X, X, M, near=near))`` (``(n, n)``), the expansion's
    products taken over the upper triangle only: ``t x t`` tiles ``(a, b)`` with ``b >= a``,
    each written at ``(a, b)`` and transposed at ``(b, a)``, so the ``2 n^2 d`` product
    costs about half (``nb (nb + 1) / 2`` of the ``nb^2`` tiles, ``nb = ceil(n / t)``). A second
    pass over row blocks of ``t`` then refines each row's ``near`` nearest entries (from
    the full row, as ``squared_distances`` does) and applies ``post`` (e.g. the kernel's
    values) in place: one ``n x n`` buffer, plus a tile and a row block. Entries agree with
    ``squared_distances`` to the expansion's rounding (other product shapes); the matrix is
    symmetric but for the refined entries. Traceable; ``n <= t`` is one block."""
    n = X.shape[0]
    if n <= tile:
        return post(squared_distances(X, X, M, near=near))
    XM, xx = _metric_rows(X, M)
    starts = [min(i * tile, n - tile) for i in range(-(-n // tile))]
    pairs = [(a, b) for i, a in enumerate(starts) for b in starts[i:]]
    first = jnp.asarray([a for a, _ in pairs], jnp.int32)
    second = jnp.asarray([b for _, b in pairs], jnp.int32)

    def rows(A, start):
        return jax.lax.dynamic_slice_in_dim(A, start, tile)

    def tile_pass(k, D):
        a, b = first[k], second[k]
        T = rows(xx, a)[:, None] + rows(xx, b)[None, :] - 2.0 * matmul(rows(XM, a), rows(X, b).T)
        D = jax.lax.dynamic_update_slice(D, T, (a, b))
        return jax.lax.dynamic_update_slice(D, T.T, (b, a))

    D = jax.lax.fori_loop(0, len(pairs), tile_pass, jnp.zeros((n, n), X.dtype))

    def row_pass(i, D):  # the last block overlaps the one before: its rows done are kept
        start = jnp.minimum(i * tile, n - tile).astype(jnp.int32)
        old = jax.lax.dynamic_slice_in_dim(D, start, tile)
        new = post(_refine(old, rows(X, start), rows(XM, start), X, XM, near, M is not None))
        fresh = start + jnp.arange(tile, dtype=jnp.int32) >= (i * tile).astype(jnp.int32)
        return jax.lax.dynamic_update_slice(D, jnp.where(fresh[:, None], new, old),
                                            (start, jnp.int32(0)))

    return jax.lax.fori_loop(0, len(starts), row_pass, D)


def nearest_columns(d2: jax.Array, k: int) -> jax.Array:
    """``(n, k)`` column indices of the ``k`` smallest entries of each row of ``d2``
    (``(n, m)``; NaN counts as the largest): the columns ``lax.top_k(-d2, k)`` picks, ties
    included (the lower column first), so the distances refined are the same.

    In two stages, so that no sort runs over a whole row: the columns in groups of ``g``
    (about ``sqrt(m / k)``), the ``k`` groups with the smallest minima, then the ``k``
    smallest of their ``k g`` entries, in column order. Exact, ordering entries by
    (value, column): a group holding one of the ``k`` smallest entries has a minimum no
    larger than it, and fewer than ``k`` other groups can have a smaller one (each would
    hold a smaller entry). On the CPU it took 0.022 s against
    ``lax.top_k``'s 0.109 s over a 2,048 x 20,000 block (BENCHMARKS.md).
    """
    n, m = d2.shape
    group = max(1, math.isqrt(m // k))
    if m <= 4 * k * group:  # a short row: one selection
        return jax.lax.top_k(-d2, k)[1]
    groups = -(-m // group)
    d2 = jnp.where(jnp.isnan(d2), jnp.inf, d2)
    blocks = jnp.pad(d2, ((0, 0), (0, groups * group - m)), constant_values=jnp.inf)
    blocks = blocks.reshape(n, groups, group)
    _, best = jax.lax.top_k(-jnp.min(blocks, axis=2), k)  # (n, k) groups
    best = jnp.sort(best, axis=1)  # candidates in column order: ties go to the lower column
    candidates = jnp.take_along_axis(blocks, best[:, :, None], axis=1).reshape(n, k * group)
    _, pick = jax.lax.top_k(-candidates, k)  # (n, k) positions among the candidates
    return jnp.take_along_axis(best, pick // group, axis=1) * group + pick % group


def symmetric_part(M: jax.Array) -> jax.Array:
    """``(M + M^T) / 2``: exact (bit for bit) for a matrix that is already symmetric."""
    M = jnp.asarray(M)
    return (M + M.T) / 2.0


def safe_sqrt(d2: jax.Array) -> jax.Array:
    """``sqrt(d2)`` with derivative 0 (not NaN) where ``d2 == 0``; NaN where ``d2`` is NaN
    (an input row holding a NaN), never a finite number."""
    positive = d2 > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, d2, 1.0)), zero_or_nan(d2))


def zero_or_nan(x: jax.Array) -> jax.Array:
    """0 where ``x`` is a number, NaN where it is NaN: the value a guarded branch takes at
    a point that must stay undefined."""
    return jnp.where(jnp.isnan(x), x, jnp.zeros_like(x))
