"""Laplace and Gaussian kernels in an optional metric ``M``, computed in row blocks.

Distances follow ``||x - z||_M^2 = x^T M x + z^T M z - 2 x^T M z`` (DESIGN.md, Kernels):
one matrix product, but its absolute error is about ``eps (x^T M x + z^T M z)``, so that in
float32 a squared distance between unit rows is only resolved down to ~1e-6 and a point
against itself gets round-off, not 0. For the Laplace kernel, whose value and gradient
weight ``k / ||x - z||`` are steepest at 0, each row's ``NEAR_PAIRS`` nearest columns (by
the expansion) are recomputed by direct difference ``(x M - z M) . (x - z)``: exactly 0
for a point against itself or an exact duplicate, and near distances to relative
precision. Every other distance keeps the expansion, clamped at 0. Nothing else is
snapped to zero. The square root is taken through a double ``where`` so that its
derivative at 0 is 0 rather than NaN (the Laplace self term).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from dnc_jax.blocks import map_row_blocks
from dnc_jax.precision import matmul

KernelName = Literal["laplace", "gaussian"]
KERNELS = ("laplace", "gaussian")

# Columns per row whose squared distance the Laplace kernel recomputes by direct difference.
NEAR_PAIRS = 8


def squared_distances(
    X: jax.Array, Z: jax.Array, M: jax.Array | None = None, *, near: int = 0
) -> jax.Array:
    """Squared distances ``||x_i - z_j||_M^2`` by the expansion, clamped at 0.

    Args:
      X: ``(n, d)`` points.
      Z: ``(m, d)`` points.
      M: optional ``(d, d)`` symmetric PSD metric; identity when ``None``.
      near: recompute each row's ``near`` smallest entries by direct difference (exact 0
        for identical rows; relative rather than absolute round-off), at ``O(n near d)``
        extra work and a top-``near`` selection over the ``(n, m)`` block.

    Returns:
      ``(n, m)`` array.
    """
    XM = X if M is None else matmul(X, M)
    ZM = Z if M is None else matmul(Z, M)
    xx = jnp.sum(XM * X, axis=1)
    zz = jnp.sum(ZM * Z, axis=1)
    d2 = xx[:, None] + zz[None, :] - 2.0 * matmul(XM, Z.T)
    k = min(int(near), Z.shape[0])
    if k > 0:
        _, idx = jax.lax.top_k(-jax.lax.stop_gradient(d2), k)  # (n, k) nearest columns
        diff = X[:, None, :] - Z[idx]
        diff_m = diff if M is None else XM[:, None, :] - ZM[idx]
        d2 = d2.at[jnp.arange(X.shape[0])[:, None], idx].set(jnp.sum(diff_m * diff, axis=-1))
    return jnp.maximum(d2, 0.0)


def kernel_distances(
    X: jax.Array, Z: jax.Array, kernel: KernelName, M: jax.Array | None = None
) -> jax.Array:
    """``squared_distances`` as ``kernel`` needs them: the Laplace kernel's near pairs by
    direct difference (``NEAR_PAIRS``), the Gaussian's (smooth at 0) by the expansion."""
    return squared_distances(X, Z, M, near=NEAR_PAIRS if kernel == "laplace" else 0)


def safe_sqrt(d2: jax.Array) -> jax.Array:
    """``sqrt(d2)`` with derivative 0 (not NaN) where ``d2 == 0``."""
    positive = d2 > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, d2, 1.0)), 0.0)


def kernel_from_sq_distances(d2: jax.Array, kernel: KernelName, bandwidth: float) -> jax.Array:
    """Kernel values from squared distances: Laplace ``exp(-r/L)``, Gaussian ``exp(-r^2/(2L^2))``."""
    if kernel == "laplace":
        return jnp.exp(-safe_sqrt(d2) / bandwidth)
    if kernel == "gaussian":
        return jnp.exp(-d2 / (2.0 * bandwidth**2))
    raise ValueError(f"Unknown kernel {kernel!r}; choose one of {KERNELS}.")


def kernel_matrix(
    X: jax.Array,
    Z: jax.Array,
    kernel: KernelName,
    bandwidth: float,
    M: jax.Array | None = None,
    *,
    block_size: int | None = None,
) -> jax.Array:
    """``(n, m)`` kernel matrix ``k(x_i, z_j)``, computed ``block_size`` rows of ``X`` at a time."""
    return map_row_blocks(
        lambda Xb: kernel_from_sq_distances(kernel_distances(Xb, Z, kernel, M), kernel, bandwidth),
        X,
        block_size,
    )


def laplace_kernel(
    X: jax.Array,
    Z: jax.Array,
    bandwidth: float,
    M: jax.Array | None = None,
    *,
    block_size: int | None = None,
) -> jax.Array:
    """Laplace kernel ``exp(-||x - z||_M / L)``; ``(n, d), (m, d) -> (n, m)``."""
    return kernel_matrix(X, Z, "laplace", bandwidth, M, block_size=block_size)


def gaussian_kernel(
    X: jax.Array,
    Z: jax.Array,
    bandwidth: float,
    M: jax.Array | None = None,
    *,
    block_size: int | None = None,
) -> jax.Array:
    """Gaussian kernel ``exp(-||x - z||_M^2 / (2 L^2))``; ``(n, d), (m, d) -> (n, m)``."""
    return kernel_matrix(X, Z, "gaussian", bandwidth, M, block_size=block_size)
