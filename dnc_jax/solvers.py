"""Kernel ridge regression: the positive-definite solve and the ``KernelPredictor`` pytree.

``alpha = (K(X, X) + reg I)^(-1) Y`` by Cholesky (DESIGN.md, Kernel ridge regression).
A factorisation that fails (not positive definite, or not finite) is retried with a
growing diagonal jitter and a ``RuntimeWarning``; if even that fails a ``ValueError``
says what to change. NaN coefficients are never returned.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from dnc_jax import _checks
from dnc_jax._linalg import matmul
from dnc_jax.blocks import map_row_blocks
from dnc_jax.kernels import KERNELS, KernelName, kernel_matrix

# Jitter added to the diagonal on retry, relative to the mean diagonal of K.
_JITTER_STEPS = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)


@jax.jit
def _cholesky_solve(K: jax.Array, Y: jax.Array, shift: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Solve ``(K + shift I) alpha = Y``; also return whether the result is finite."""
    A = K + shift * jnp.eye(K.shape[0], dtype=K.dtype)
    factor = jax.scipy.linalg.cho_factor(A, lower=True)
    alpha = jax.scipy.linalg.cho_solve(factor, Y)
    return alpha, jnp.isfinite(alpha).all() & jnp.isfinite(factor[0]).all()


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
    The coefficients are returned in ``K``'s dtype.
    """
    if not bool(jnp.isfinite(K).all()):
        raise ValueError(
            "The kernel matrix has non-finite entries; check the inputs' scale and the bandwidth."
        )
    dtype = K.dtype
    alpha, ok = _cholesky_solve(K, Y, jnp.asarray(reg, dtype=dtype))
    if bool(ok):
        return alpha
    scale = float(jnp.mean(jnp.diagonal(K))) or 1.0
    with jax.enable_x64(kernel64 is not None):
        if kernel64 is not None:
            K = kernel64()
            Y = jnp.asarray(Y, K.dtype)
            alpha, ok = _cholesky_solve(K, Y, jnp.asarray(reg, dtype=K.dtype))
            if bool(ok):
                return alpha.astype(dtype)
        for step in _JITTER_STEPS:
            jitter = step * scale
            alpha, ok = _cholesky_solve(K, Y, jnp.asarray(reg + jitter, dtype=K.dtype))
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


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["centers", "coefs", "M"],
    meta_fields=["kernel", "bandwidth"],
)
@dataclasses.dataclass(frozen=True, eq=False)
class KernelPredictor:
    """A fitted kernel predictor ``f(x) = sum_j coefs_j k(x, centers_j)``.

    Attributes:
      centers: ``(n, d)`` training points.
      coefs: ``(n, C)`` coefficients ``alpha``.
      M: ``(d, d)`` metric of the kernel, or ``None`` for the identity.
      kernel: ``"laplace"`` or ``"gaussian"``.
      bandwidth: ``L``.
    """

    centers: jax.Array
    coefs: jax.Array
    M: jax.Array | None
    kernel: KernelName
    bandwidth: float

    def predict_one(self, x: jax.Array) -> jax.Array:
        """Prediction for one example: ``(d,) -> (C,)``. Differentiable; vmap it to batch."""
        k = kernel_matrix(x[None, :], self.centers, self.kernel, self.bandwidth, self.M)
        return matmul(k, self.coefs)[0]

    def predict(self, X: ArrayLike, *, block_size: int | None = 4096) -> jax.Array:
        """Predictions for a batch: ``(m, d) -> (m, C)``, ``block_size`` rows at a time."""
        X = _checks.as_float_matrix("X", X, dtype=self.centers.dtype)
        if X.shape[1] != self.centers.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} features but the predictor was fitted on "
                f"{self.centers.shape[1]}."
            )
        return _predict(self, X, block_size)


@functools.partial(jax.jit, static_argnames=("block_size",))
def _predict(predictor: KernelPredictor, X: jax.Array, block_size: int | None) -> jax.Array:
    def block(Xb):
        K = kernel_matrix(Xb, predictor.centers, predictor.kernel, predictor.bandwidth, predictor.M)
        return matmul(K, predictor.coefs)

    return map_row_blocks(block, X, block_size)


@functools.partial(jax.jit, static_argnames=("kernel", "bandwidth", "block_size"))
def train_kernel_matrix(X, M, kernel, bandwidth, block_size):
    """``K(X, X)`` (``(n, n)``), jitted once per shape and kernel setting."""
    return kernel_matrix(X, X, kernel, bandwidth, M, block_size=block_size)


def validate_fit_inputs(X: ArrayLike, Y: ArrayLike, kernel: str, bandwidth: float, reg: float):
    """Checks shared by every fit: returns ``(X, Y)`` as float JAX arrays, ``Y`` 2-D."""
    if kernel not in KERNELS:
        raise ValueError(f"Unknown kernel {kernel!r}; choose one of {KERNELS}.")
    _checks.check_positive("bandwidth", bandwidth)
    _checks.check_nonnegative("reg", reg)
    X = _checks.as_float_matrix("X", X)
    Y_arr = Y if isinstance(Y, jax.Array) else np.asarray(Y)
    if Y_arr.ndim == 1:
        Y_arr = Y_arr[:, None]
    Y = _checks.as_float_matrix("Y", Y_arr, dtype=X.dtype)
    _checks.check_same_rows("X", X, "Y", Y)
    _checks.check_finite("X", X)
    _checks.check_finite("Y", Y)
    return X, Y


def fit_kernel_predictor(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    kernel: KernelName = "laplace",
    bandwidth: float = 1.0,
    reg: float = 1e-3,
    M: ArrayLike | None = None,
    block_size: int | None = None,
) -> KernelPredictor:
    """Fit kernel ridge regression ``alpha = (K(X, X) + reg I)^(-1) Y``.

    Args:
      X: ``(n, d)`` training inputs.
      Y: ``(n, C)`` targets (or ``(n,)``, treated as ``C = 1``).
      kernel: ``"laplace"`` or ``"gaussian"``.
      bandwidth: ``L > 0``.
      reg: ridge ``>= 0``; 0 interpolates.
      M: optional ``(d, d)`` PSD metric of the kernel.
      block_size: rows of the kernel matrix built at a time.

    Returns:
      A ``KernelPredictor``.
    """
    X, Y = validate_fit_inputs(X, Y, kernel, bandwidth, reg)
    if M is not None:
        M = jnp.asarray(M, dtype=X.dtype)
        if M.shape != (X.shape[1], X.shape[1]):
            raise ValueError(f"M must be ({X.shape[1]}, {X.shape[1]}); got {M.shape}.")
        _checks.check_finite("M", M)
    K = train_kernel_matrix(X, M, kernel, float(bandwidth), block_size)
    coefs = solve_psd(K, Y, float(reg), kernel64=lambda: train_kernel_matrix(
        X.astype(jnp.float64), None if M is None else M.astype(jnp.float64), kernel,
        float(bandwidth), block_size))
    return KernelPredictor(X, coefs, M, kernel, float(bandwidth))
