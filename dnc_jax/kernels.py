"""Laplace and Gaussian kernels in an optional metric ``M``, computed in row blocks.

Distances follow ``||x - z||_M^2 = x^T M x + z^T M z - 2 x^T M z`` (DESIGN.md, Kernels),
clamped at 0. A squared distance within round-off of zero
(``<= ZERO_TOL * eps * (x^T M x + z^T M z)``) is treated as exactly zero, so that a point
against itself has distance 0 in float32 too; the square root is taken through a double
``where`` so that its derivative there is 0 rather than NaN (the Laplace self term).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from dnc_jax._linalg import matmul
from dnc_jax.blocks import map_row_blocks

KernelName = Literal["laplace", "gaussian"]
KERNELS = ("laplace", "gaussian")

# Multiple of the dtype's machine epsilon under which a relative squared distance is 0.
ZERO_TOL = 100.0


def squared_distances(X: jax.Array, Z: jax.Array, M: jax.Array | None = None) -> jax.Array:
    """Squared distances ``||x_i - z_j||_M^2``, clamped at 0 and snapped to 0 near it.

    Args:
      X: ``(n, d)`` points.
      Z: ``(m, d)`` points.
      M: optional ``(d, d)`` symmetric PSD metric; identity when ``None``.

    Returns:
      ``(n, m)`` array.
    """
    XM = X if M is None else X @ M
    ZM = Z if M is None else Z @ M
    xx = jnp.sum(XM * X, axis=1)
    zz = jnp.sum(ZM * Z, axis=1)
    d2 = xx[:, None] + zz[None, :] - 2.0 * matmul(XM, Z.T)
    tol = ZERO_TOL * jnp.finfo(d2.dtype).eps * (xx[:, None] + zz[None, :])
    return jnp.where(d2 > tol, d2, 0.0)


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
        lambda Xb: kernel_from_sq_distances(squared_distances(Xb, Z, M), kernel, bandwidth),
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
