"""The Nyström kernel machine: ridge regression restricted to ``m`` centres, as in Falkon.

With centres ``Z`` (``m x d``, sampled uniformly from the training rows, seeded, or given)
the predictor is ``f(x) = sum_j alpha_j k(x, z_j)`` and ``alpha`` minimises
``||K_nm alpha - Y||^2 + reg alpha^T K_mm alpha``:

    (K_nm^T K_nm + reg K_mm) alpha = K_nm^T Y,

which for ``Z = X`` (``m = n``) is ``K (K + reg I) alpha = K Y``, the exact fit. It is
solved by preconditioned conjugate gradients with Falkon's preconditioner (Rudi,
Carratino and Rosasco, NeurIPS 2017, section 3; Meanti et al., NeurIPS 2020):
``P = (n/m) K_mm^2 + reg K_mm = L R R^T L^T`` with ``K_mm = L L^T`` and
``R R^T = (n/m) L^T L + reg I``, applied as ``P^-1 v = L^-T R^-T R^-1 L^-1 v`` by four
triangular solves (``O(m^2 C)`` per iteration). The two Cholesky factorisations and the
symmetric product ``L^T L`` (``m^3`` FLOPs in all; no inverse is formed) run in float64
numpy on a CPU backend, and on the accelerator in the data's dtype elsewhere
(``falkon_factors_on_device``: the host's float64 factors would dominate an accelerator's
layer; BENCHMARKS.md, "Deep RFM at scale"), with Falkon's float32 jitter ``1e-5`` on ``K_mm``'s
diagonal (its ``pc_epsilon_32``). The preconditioner changes how fast CG converges, not
what it converges to. Each iteration costs ``O(n m C)``; the
rows of ``K_nm`` are sharded with the data and held when they fit ``memory_budget``,
recomputed in row blocks otherwise; products over rows are summed across devices.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from dnc_jax.blocks import row_chunk_sum
from dnc_jax.kernels import Kernel
from dnc_jax.precision import matmul
from dnc_jax.rows import DATA, REPLICATED, ROWS, Rows, num_shards, row_mask
from dnc_jax.solvers.cg import pcg
from dnc_jax.solvers.cholesky import train_kernel_matrix

_JITTER_STEPS = (0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3)


def cholesky_with_jitter(A: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a float64 PSD matrix, adding ``eps * mean(diag)`` jitter
    (``eps`` from 0 up to 1e-3) until it succeeds."""
    scale = float(np.mean(np.diag(A))) or 1.0
    for eps in _JITTER_STEPS:
        try:
            return np.linalg.cholesky(A + eps * scale * np.eye(A.shape[0]))
        except np.linalg.LinAlgError:
            continue
    raise ValueError("The centres' kernel matrix K_mm is not positive definite even with "
                     "jitter; remove duplicate centres or check the bandwidth.")


def falkon_factors(K_mm: np.ndarray, n: int, reg: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower ``(L, R)`` with ``L R R^T L^T = (n/m) K_mm^2 + reg K_mm`` (module docstring)."""
    m = K_mm.shape[0]
    L = cholesky_with_jitter(K_mm)
    LtL = scipy.linalg.blas.dsyrk(1.0, L, trans=1, lower=1)  # lower triangle of L^T L
    LtL = np.tril(LtL) + np.tril(LtL, -1).T
    R = cholesky_with_jitter((n / m) * LtL + reg * np.eye(m))
    return L, R


DEVICE_JITTER = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-13}  # Falkon's pc_epsilon
MAX_DEVICE_JITTER = 1e-2


def falkon_factors_on_device(K_mm: jax.Array, n: int, reg: float) -> tuple[jax.Array, jax.Array]:
    """``falkon_factors`` on the device in ``K_mm``'s dtype: ``K_mm`` gets
    ``DEVICE_JITTER * mean(diag)`` on its diagonal (ten times more, up to ``1e-2``, while a
    factor comes out non-finite), and both factorisations and ``L^T L`` (at
    ``precision.PRECISION``) stay on the device."""
    m = K_mm.shape[0]
    scale = float(jnp.mean(jnp.diag(K_mm))) or 1.0
    eye = jnp.eye(m, dtype=K_mm.dtype)
    first = DEVICE_JITTER[np.dtype(K_mm.dtype)]
    # eps = first * 10^k up to 1e-2, by exponent: repeated *10 from 1e-13 lands on 0.0099999
    # (below the cap) and went on to 0.1
    for k in range(round(np.log10(MAX_DEVICE_JITTER / first)) + 1):
        L, R = device_factors(K_mm + (first * 10.0**k * scale) * eye,
                               jnp.asarray(n / m, K_mm.dtype), jnp.asarray(reg, K_mm.dtype))
        if bool(jnp.isfinite(L).all() & jnp.isfinite(R).all()):
            return L, R
    raise ValueError("The centres' kernel matrix K_mm is not positive definite even "
                     "with jitter; remove duplicate centres or check the bandwidth.")


@jax.jit
def device_factors(K_mm, ratio, reg):
    """Falkon's lower ``(L, R)`` in JAX (traceable), ``K_mm = L L^T`` and
    ``R R^T = ratio L^T L + reg I`` (module docstring; ``ratio = n / m``)."""
    L = jnp.linalg.cholesky(K_mm)
    LtL = matmul(L.T, L)
    R = jnp.linalg.cholesky(ratio * LtL + reg * jnp.eye(K_mm.shape[0], dtype=K_mm.dtype))
    return L, R


def apply_inverse_factors(L: jax.Array, R: jax.Array, v: jax.Array) -> jax.Array:
    """``L^-T R^-T R^-1 L^-1 v`` for lower-triangular ``L``, ``R``."""
    solve = jax.scipy.linalg.solve_triangular
    w = solve(R, solve(L, v, lower=True), lower=True)
    return solve(L, solve(R, w, lower=True, trans="T"), lower=True, trans="T")


@functools.partial(
    jax.jit,
    static_argnames=("mesh", "n", "hold", "block_size", "max_iter"),
)
def nystrom_solve(kernel: Kernel, X, Y, centers, K_mm, L, R, reg, tol, *, mesh, n, hold,
                  block_size, max_iter):
    """PCG on the Nyström normal equations for row-sharded ``X``, ``Y`` and replicated
    ``centers``; returns a replicated ``PCGResult`` (``alpha`` is ``(m, C)``)."""
    rows = X.shape[0] // num_shards(mesh)

    def local(kernel, X_local, Y_local, centers, K_mm, L, R, reg, tol):
        mask = row_mask(rows, n, X_local.dtype)[:, None]
        chunk = min(block_size or rows, rows)

        def K_nm(Xb):
            return kernel(Xb, centers)

        if hold:
            K_local = mask * K_nm(X_local)

            def normal_product(v):  # K_nm^T K_nm v over this device's rows
                return matmul(K_local.T, matmul(K_local, v))

            rhs = matmul(K_local.T, Y_local)
        else:
            def normal_product(v):
                def part(Xb, mb):
                    K = mb * K_nm(Xb)
                    return matmul(K.T, matmul(K, v))

                return row_chunk_sum(part, (X_local, mask), chunk)

            rhs = row_chunk_sum(lambda Xb, mb, Yb: matmul((mb * K_nm(Xb)).T, Yb),
                                (X_local, mask, Y_local), chunk)

        def apply_A(v):
            return jax.lax.psum(normal_product(v), DATA) + reg * matmul(K_mm, v)

        def apply_Pinv(v):
            return apply_inverse_factors(L, R, v)

        return pcg(apply_A, apply_Pinv, jax.lax.psum(rhs, DATA), tol=tol, max_iter=max_iter)

    specs = (REPLICATED, ROWS, ROWS) + (REPLICATED,) * 6
    return jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=REPLICATED,
                         check_vma=False)(kernel, X, Y, centers, K_mm, L, R, reg, tol)


def solve(X: Rows, Y: Rows, centers: jax.Array, *, kernel: Kernel, reg, tol, max_iter, hold,
          block_size):
    """Falkon solve (module docstring); returns ``(PCGResult, seconds building the
    preconditioner)``."""
    tic = time.perf_counter()
    K_mm = train_kernel_matrix(centers, kernel)
    if jax.default_backend() == "cpu":
        L, R = (jnp.asarray(f, X.dtype)
                for f in falkon_factors(np.asarray(K_mm, np.float64), X.n, reg))
    else:
        L, R = falkon_factors_on_device(K_mm, X.n, reg)
    precond_seconds = time.perf_counter() - tic
    result = nystrom_solve(
        kernel, X.data, Y.data, centers, K_mm, L, R, jnp.asarray(reg, X.dtype),
        jnp.asarray(tol, X.dtype), mesh=X.mesh, n=X.n, hold=hold, block_size=block_size,
        max_iter=max_iter)
    return result, precond_seconds
