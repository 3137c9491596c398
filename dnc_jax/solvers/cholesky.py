"""The direct solver: Cholesky factorisation of the whole ``n x n`` kernel matrix.

``alpha = (K(X, X) + reg I)^(-1) Y`` by Cholesky (DESIGN.md, Kernel ridge regression).
A factorisation that fails (not positive definite, or not finite) is retried with a
growing diagonal jitter and a ``RuntimeWarning``; if even that fails a ``ValueError``
says what to change. NaN coefficients are never returned.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp

from dnc_jax.kernels import Kernel
from dnc_jax.precision import matmul

# Jitter added to the diagonal on retry, relative to the mean diagonal of K.
_JITTER_STEPS = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
# Above this many rows a CPU factors in blocks (``_blocked_cholesky_solve``): the LAPACK jaxlib
# calls there (scipy's bundled OpenBLAS, 0.3.30 on the development machine) crashed with a
# segmentation fault in spotrf at n = 40,000, from scipy alone as well, while 33,000 worked.
LAPACK_CHOLESKY_MAX_N = 33_000
CHOLESKY_BLOCK = 2048


@jax.jit
def _cholesky_solve(K: jax.Array, Y: jax.Array, shift: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Solve ``(K + shift I) alpha = Y``; also return whether the result is finite."""
    A = K + shift * jnp.eye(K.shape[0], dtype=K.dtype)
    factor = jax.scipy.linalg.cho_factor(A, lower=True)
    alpha = jax.scipy.linalg.cho_solve(factor, Y)
    return alpha, jnp.isfinite(alpha).all() & jnp.isfinite(factor[0]).all()


@functools.partial(jax.jit, static_argnames=("block",))
def _blocked_cholesky_solve(K: jax.Array, Y: jax.Array, shift: jax.Array, block: int
                            ) -> tuple[jax.Array, jax.Array]:
    """``_cholesky_solve`` with LAPACK called only on ``block x block`` diagonal blocks.

    Right-looking blocked Cholesky of ``A = K + shift I``: factor the diagonal block, solve
    the panel below it (``P L_kk^-T``), subtract ``P P^T`` from the trailing lower triangle
    one column block at a time; then block forward and back substitution. The same
    ``n^3/3`` FLOPs, mostly in matrix products. Memory is not lower than one LAPACK call's:
    XLA held 2.36 ``n x n`` buffers besides ``K`` at n = 40,000 (LAPACK's path: 2.1).
    """
    n = K.shape[0]
    A = K + shift * jnp.eye(n, dtype=K.dtype)
    starts = list(range(0, n, block))
    solve = jax.lax.linalg.triangular_solve
    for k0 in starts:
        k1 = min(k0 + block, n)
        L_kk = jax.lax.linalg.cholesky(A[k0:k1, k0:k1], symmetrize_input=False)
        A = A.at[k0:k1, k0:k1].set(L_kk)
        if k1 < n:
            P = solve(L_kk, A[k1:, k0:k1], left_side=False, lower=True, transpose_a=True)
            A = A.at[k1:, k0:k1].set(P)
            for j0 in range(k1, n, block):
                j1 = min(j0 + block, n)
                A = A.at[j0:, j0:j1].add(-matmul(P[j0 - k1:], P[j0 - k1:j1 - k1].T))
    parts: list[jax.Array] = []  # L y = Y
    for i0 in starts:
        i1 = min(i0 + block, n)
        rhs = Y[i0:i1] - matmul(A[i0:i1, :i0], jnp.concatenate(parts)) if i0 else Y[i0:i1]
        parts.append(solve(A[i0:i1, i0:i1], rhs, left_side=True, lower=True))
    y = jnp.concatenate(parts)
    x: list[jax.Array] = []  # L^T alpha = y, last block first
    for i0 in reversed(starts):
        i1 = min(i0 + block, n)
        rhs = y[i0:i1] - matmul(A[i1:, i0:i1].T, jnp.concatenate(x[::-1])) if x else y[i0:i1]
        x.append(solve(A[i0:i1, i0:i1], rhs, left_side=True, lower=True, transpose_a=True))
    alpha = jnp.concatenate(x[::-1])
    return alpha, jnp.isfinite(alpha).all() & jnp.isfinite(A).all()


def _factor_solve(K: jax.Array, Y: jax.Array, shift: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``_cholesky_solve``, in blocks past ``LAPACK_CHOLESKY_MAX_N`` rows on a CPU."""
    if jax.default_backend() == "cpu" and K.shape[0] > LAPACK_CHOLESKY_MAX_N:
        return _blocked_cholesky_solve(K, Y, shift, CHOLESKY_BLOCK)
    return _cholesky_solve(K, Y, shift)


def solve_psd(
    K: jax.Array,
    Y: jax.Array,
    reg: float,
    *,
    kernel64: Callable[[], jax.Array] | None = None,
) -> jax.Array:
    """``(K + reg I)^(-1) Y`` for a symmetric PSD ``K`` (``(n, n)``, ``Y`` ``(n, C)``).

    If the Cholesky factorisation in ``K``'s dtype fails and ``kernel64`` is given, it is
    called under ``jax.enable_x64`` to rebuild ``K`` in float64 (float32 distances of
    nearly coincident points, as in deeply collapsed layers, can make a float32 kernel
    matrix indefinite by more than ``reg``) and the solve is repeated there. If that fails
    too, a growing jitter ``eps_k * mean(diag K)`` (``eps_k`` in 1e-7 .. 1e-2) is added with
    a ``RuntimeWarning``; a ``ValueError`` says what to change when all retries fail.
    Past ``LAPACK_CHOLESKY_MAX_N`` rows on a CPU the factorisation runs in blocks
    (``_blocked_cholesky_solve``). The coefficients are returned in ``K``'s dtype.
    """
    if not bool(jnp.isfinite(K).all()):
        raise ValueError(
            "The kernel matrix has non-finite entries; check the inputs' scale and the bandwidth."
        )
    dtype = K.dtype
    alpha, ok = _factor_solve(K, Y, jnp.asarray(reg, dtype=dtype))
    if bool(ok):
        return alpha
    scale = float(jnp.mean(jnp.diagonal(K))) or 1.0
    # x64 only for the rebuild: entering enable_x64(False) would truncate a float64 K
    with jax.enable_x64(True) if kernel64 is not None else contextlib.nullcontext():
        if kernel64 is not None:
            K = kernel64()
            Y = jnp.asarray(Y, K.dtype)
            alpha, ok = _factor_solve(K, Y, jnp.asarray(reg, dtype=K.dtype))
            if bool(ok):
                return alpha.astype(dtype)
        for step in _JITTER_STEPS:
            jitter = step * scale
            alpha, ok = _factor_solve(K, Y, jnp.asarray(reg + jitter, dtype=K.dtype))
            if bool(ok):
                warnings.warn(
                    f"Kernel matrix + reg*I (reg={reg:g}) is not numerically positive definite "
                    f"(duplicate points or reg too small); added jitter {jitter:.3g} to the "
                    "diagonal. Pass a larger reg to silence this.",
                    RuntimeWarning,
                    stacklevel=3,
                )
                return alpha.astype(dtype)
    raise ValueError(
        f"The kernel solve failed even with jitter up to {_JITTER_STEPS[-1] * scale:.3g}: "
        "the kernel matrix is not positive definite. Increase reg, remove duplicate "
        "points, or check the bandwidth."
    )


@functools.partial(jax.jit, static_argnames=("block_size",))
def train_kernel_matrix(X: jax.Array, kernel: Kernel, block_size: int | None = None) -> jax.Array:
    """``kernel(X, X)`` (``(n, n)``), jitted once per shape and kernel family."""
    if not isinstance(kernel, Kernel):
        raise TypeError("train_kernel_matrix(X, kernel, block_size): kernel is a Kernel value, "
                        "e.g. Kernel('laplace', 2.0, M); the (X, M, kernel, bandwidth, "
                        "block_size) order is gone.")
    return kernel(X, X, block_size=block_size)


def solve_kernel_system(K: jax.Array, X: jax.Array, Y: jax.Array, reg: float, *,
                        kernel: Kernel, block_size: int | None = None) -> jax.Array:
    """``(K + reg I)^(-1) Y`` for ``K = kernel(X, X)``, by ``solve_psd`` with the float64
    rebuild of ``K`` from ``X`` (and the kernel's bandwidth and ``M``) as its fallback."""

    def kernel64() -> jax.Array:
        leaves = jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float64), kernel)
        return train_kernel_matrix(X.astype(jnp.float64), leaves, block_size)

    return solve_psd(K, Y, float(reg), kernel64=kernel64)
