"""The traceable fit: kernel ridge regression as a pure function of arrays.

``fit(kernel, X, Y, reg)`` solves ``(K(X, X) + reg I) alpha = Y`` with no host-side
decisions (no memory check, no retries, no timing), so it composes with ``jax.jit``,
``jax.vmap`` (over bandwidths, ridges, metrics, data sets of one shape) and ``jax.grad``
(bandwidth, ridge, ``M``, ``X``, ``Y``):

- ``solver="cholesky"``: ``jax.scipy.linalg.cho_factor`` / ``cho_solve``, differentiated
  through the factorisation;
- ``solver="cg"``: ``jax.scipy.sparse.linalg.cg`` on the same system, whose
  ``jax.lax.custom_linear_solve`` differentiates implicitly: the gradient of the solve is
  another solve with the same operator, never a backward pass through the iterations;
- ``solver="nystrom"`` with given ``centers`` ``Z`` (``m x d``): the Nyström machine of
  ``solvers.nystrom``, ``(K_nm^T K_nm + reg K_mm) alpha = K_nm^T Y``, by the same CG with
  Falkon's preconditioner (its factors from ``K_mm`` with Falkon's jitter, which changes
  the preconditioner, not the solution); the centres are data (a leaf), drawn by the
  caller.

Cholesky and CG hold ``K`` (``n x n``) in memory; Nyström ``K_nm`` (``n x m``). The shell
(``fit_kernel_ridge``) chooses the solver by memory, shards, retries an indefinite float32
matrix in float64 and checks the result. Traced, ``fit`` cannot raise on values: NaN or
infinite inputs, a ridge that is negative and a bandwidth that is not positive give NaN
coefficients (``dnc_jax.checked`` reports them as errors), a system that is not positive
definite gives NaN coefficients under Cholesky, and an unconverged CG its last iterate.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from dnc_jax import _checks
from dnc_jax.kernels import Kernel
from dnc_jax.precision import matmul
from dnc_jax.predictor import KernelPredictor
from dnc_jax.solvers.nystrom import apply_inverse_factors, device_factors

# CG's stopping rule and iteration cap: every solver option and estimator defaults to these
DEFAULT_TOL = 1e-6
DEFAULT_MAX_ITER = 1000

CORE_SOLVERS = ("cholesky", "cg", "nystrom")


def checked_inputs(kernel: Kernel, X: ArrayLike, Y: ArrayLike, reg: ArrayLike
                   ) -> tuple[jax.Array, jax.Array]:
    """The checks of a traceable fit (``fit``, ``rfm_step``): ``(X, Y)`` as float arrays
    with ``Y`` 2-D, or ``ValueError`` for a kernel that is not a ``Kernel`` value, a ``Y``
    whose rows differ from ``X``'s, a bad kernel leaf, a negative ridge or a NaN or
    infinity in ``X``, ``Y`` or ``M`` (for tracers these value checks are reported by
    ``dnc_jax.checked``; unchecked, such inputs give NaN coefficients)."""
    if not isinstance(kernel, Kernel):
        raise ValueError("kernel must be a dnc_jax.Kernel value, e.g. Kernel('laplace', 2.0); "
                         f"got {type(kernel).__name__}.")
    X = _checks.as_float_matrix("X", X)
    Y = jnp.asarray(Y, X.dtype)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise ValueError(f"Y must be (n,) or (n, C) with n = {X.shape[0]}; got {Y.shape}.")
    kernel.check(X.shape[1])
    _checks.check_nonnegative("reg", reg)
    _checks.check_finite("X", X)
    _checks.check_finite("Y", Y)
    if kernel.M is not None:
        _checks.check_finite("M", jnp.asarray(kernel.M))
    return X, Y


def fit(
    kernel: Kernel,
    X: ArrayLike,
    Y: ArrayLike,
    reg: ArrayLike = 1e-3,
    *,
    solver: str = "cholesky",
    tol: float = DEFAULT_TOL,
    max_iter: int | None = None,
    centers: ArrayLike | None = None,
) -> KernelPredictor:
    """Kernel ridge regression ``alpha = (K(X, X) + reg I)^(-1) Y`` (module docstring).

    Supports ``jax.jit``, ``jax.vmap`` and ``jax.grad``.

    Args:
      kernel: a ``Kernel`` value (family, bandwidth, optional metric ``M``).
      X: ``(n, d)`` training inputs; Y: ``(n, C)`` targets (or ``(n,)``: ``C = 1``).
      reg: the ridge, ``>= 0`` (a leaf: traceable, differentiable).
      solver: ``"cholesky"``, ``"cg"`` or ``"nystrom"``.
      tol: CG's relative residual.
      max_iter: CG's iteration cap (default ``10 n``, or ``10 m`` for Nyström).
      centers: ``(m, d)`` Nyström centres (``solver="nystrom"`` only; e.g. rows of ``X``).

    Returns:
      The ``KernelPredictor`` with centres ``X`` (or ``centers``) and the kernel's family,
      bandwidth and ``M``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from dnc_jax import Kernel, fit
      >>> X = jax.random.normal(jax.random.key(0), (20, 3))
      >>> Y = jnp.sin(X[:, :1])
      >>> fits = jax.vmap(lambda L: fit(Kernel("gaussian", L), X, Y, 1e-2))(jnp.array([1.0, 2.0]))
      >>> fits.coefs.shape
      (2, 20, 1)
    """
    X, Y = checked_inputs(kernel, X, Y, reg)
    predictor = _fit(kernel, X, Y, reg, solver, tol, max_iter, centers)
    # a traced ridge that is negative or not finite: NaN coefficients, never a solve of
    # another system (an eager one was refused above)
    ridge = jnp.asarray(reg)
    return dataclasses.replace(predictor, coefs=_checks.nan_unless(
        jnp.isfinite(ridge) & (ridge >= 0), predictor.coefs))


def _fit(kernel, X, Y, reg, solver, tol, max_iter, centers) -> KernelPredictor:
    """``fit`` on checked inputs."""
    if solver not in CORE_SOLVERS:
        raise ValueError(f"solver must be one of {CORE_SOLVERS}; got {solver!r}.")
    bandwidth = jnp.asarray(kernel.bandwidth, X.dtype)
    M = None if kernel.M is None else jnp.asarray(kernel.M, X.dtype)
    reg = jnp.asarray(reg, X.dtype)
    value = Kernel(kernel.family, bandwidth, M)
    if solver == "nystrom":
        if centers is None:
            raise ValueError("solver='nystrom' needs centers: an (m, d) array, e.g. rows of X.")
        Z = _checks.as_float_matrix("centers", centers, dtype=X.dtype)
        if Z.shape[1] != X.shape[1]:
            raise ValueError(f"centers must have {X.shape[1]} columns; got {Z.shape}.")
        K_nm, K_mm = value(X, Z), value(Z, Z)
        jitter = (1e-5 if X.dtype == jnp.float32 else 1e-10) * jnp.mean(jnp.diagonal(K_mm))
        L, R = device_factors(K_mm + jitter * jnp.eye(Z.shape[0], dtype=X.dtype),
                              X.shape[0] / Z.shape[0], reg)
        coefs, _ = jax.scipy.sparse.linalg.cg(
            lambda v: matmul(K_nm.T, matmul(K_nm, v)) + reg * matmul(K_mm, v),
            matmul(K_nm.T, Y), tol=tol, M=lambda v: apply_inverse_factors(L, R, v),
            maxiter=10 * Z.shape[0] if max_iter is None else int(max_iter))
        return KernelPredictor(value, Z, coefs)
    if centers is not None:
        raise ValueError("centers are for solver='nystrom'.")
    K = value(X, X)
    if solver == "cholesky":
        factor = jax.scipy.linalg.cho_factor(K + reg * jnp.eye(X.shape[0], dtype=X.dtype),
                                             lower=True)
        coefs = jax.scipy.linalg.cho_solve(factor, Y)
    else:
        coefs, _ = jax.scipy.sparse.linalg.cg(
            lambda v: matmul(K, v) + reg * v, Y, tol=tol,
            maxiter=10 * X.shape[0] if max_iter is None else int(max_iter))
    return KernelPredictor(value, X, coefs)
