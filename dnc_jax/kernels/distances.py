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
    M = None if M is None else symmetric_part(M)
    XM = X if M is None else matmul(X, M)
    ZM = Z if M is None else matmul(Z, M)
    xx = jnp.sum(XM * X, axis=1)
    zz = jnp.sum(ZM * Z, axis=1)
    d2 = xx[:, None] + zz[None, :] - 2.0 * matmul(XM, Z.T)
    k = min(int(near), Z.shape[0])
    if k > 0:
        idx = nearest_columns(jax.lax.stop_gradient(d2), k)
        diff = X[:, None, :] - Z[idx]
        diff_m = diff if M is None else XM[:, None, :] - ZM[idx]
        d2 = d2.at[jnp.arange(X.shape[0])[:, None], idx].set(jnp.sum(diff_m * diff, axis=-1))
    # an infinite input (or an overflow) has no distance: NaN, not a kernel value of 0
    return jnp.where(jnp.isinf(d2), jnp.nan, jnp.maximum(d2, 0.0))


def nearest_columns(d2: jax.Array, k: int) -> jax.Array:
    """``(n, k)`` column indices of the ``k`` smallest entries of each row of ``d2``
    (``(n, m)``; NaN counts as the largest; ties in any order).

    In two stages, so that no sort runs over a whole row: the columns in groups of ``g``
    (about ``sqrt(m / k)``), the ``k`` groups with the smallest minima, then the ``k``
    smallest of their ``k g`` entries. Exact: a group holding one of the ``k`` smallest
    entries has a minimum no larger than it, and fewer than ``k`` other groups can have a
    smaller one (each would hold a smaller entry). On the CPU it took 0.022 s against
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
