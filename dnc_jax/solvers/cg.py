"""The iterative exact solver: preconditioned conjugate gradients on ``(K + reg I) alpha = Y``.

All ``C`` right-hand sides run together, each column with its own step sizes (``pcg``).
The preconditioner is a Nyström approximation of ``K`` from ``r`` landmark rows sampled
uniformly (seeded): ``K ~ F F^T`` with ``F = K(X, X_S) K_SS^(-1/2)``; with
``F^T F = V Lambda V^T`` and ``U = F V Lambda^(-1/2)`` it applies

    P^-1 v = (lambda_r + reg) U (Lambda + reg I)^-1 U^T v + (I - U U^T) v

(Frangella, Tropp and Udell, "Randomized Nyström preconditioning", SIAM J. Matrix Anal.
Appl. 2023, eq. 5.3), which costs two ``n x r`` products per iteration. The ``r x r``
algebra runs in float64 on the host.

The rows of ``X`` are sharded over the mesh (``dnc_jax.sharding``): each device holds the
kernel rows of its own samples, ``K(X_local, X)``, when they fit ``memory_budget`` bytes,
and otherwise recomputes them in row blocks inside every product; either way the other
devices' rows reach it by a ring, and inner products are summed across devices.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dnc_jax.blocks import fill_row_blocks, map_row_blocks
from dnc_jax.kernels import Kernel
from dnc_jax.kernels.value import symmetric_kernel_matrix
from dnc_jax.precision import matmul
from dnc_jax.rows import DATA, REPLICATED, ROWS, Rows, num_shards, ring_fold, ring_sum, row_mask
from dnc_jax.solvers.cholesky import train_kernel_matrix

# Eigenvalues below this fraction of the largest are dropped from the r x r algebra.
RANK_RTOL = 1e-7


class PCGResult(NamedTuple):
    """Solution and convergence record of ``pcg``."""

    solution: jax.Array
    iterations: jax.Array
    converged: jax.Array  # every column's recursively updated residual reached tol
    residual: jax.Array  # max over columns of ||B - A X|| / ||B||, recomputed at the end


def pcg(apply_A, apply_Pinv, B: jax.Array, *, tol: float, max_iter: int, total=lambda x: x,
        X0: jax.Array | None = None, warm=True):
    """Column-wise preconditioned conjugate gradients for ``A X = B`` (``B`` is ``(n, C)``).

    Args:
      apply_A, apply_Pinv: ``(n, C) -> (n, C)`` products with the SPD ``A`` and ``P^-1``.
      B: right-hand sides (this device's rows inside ``shard_map``).
      tol: stop when every column's relative residual ``||r|| / ||b||`` is below it.
      max_iter: iteration cap.
      total: sums a per-device ``(C,)`` partial over devices (``psum``) when the rows
        are sharded; the identity otherwise.
      X0: a starting point (``None``: zeros), e.g. a nearby system's solution; each
        column starts from ``gamma x0`` with ``gamma = x0^T b / x0^T A x0``, the multiple
        of ``x0`` closest to the solution in the ``A``-norm, so never farther than zero
        (one more product).
      warm: a boolean (traced or not): start from ``X0`` when true, from zero (no product
        spent on ``X0``) when false; one compiled program serves both.

    Returns:
      ``PCGResult``; converged columns stop moving while the others go on.
    """

    def colsum(U, V):
        return total(jnp.sum(U * V, axis=0))[None, :]

    b_norm = jnp.sqrt(colsum(B, B))
    b_safe = jnp.where(b_norm > 0, b_norm, 1.0)

    def scaled_start(X0):  # the multiple of X0 nearest the solution in the A-norm
        AX0 = apply_A(X0)
        x_ax = colsum(X0, AX0)
        gamma = jnp.where(x_ax > 0, colsum(X0, B) / jnp.where(x_ax > 0, x_ax, 1.0), 0.0)
        return gamma * X0, B - gamma * AX0

    if X0 is None:
        X0, R0 = jnp.zeros_like(B), B
    else:
        X0, R0 = jax.lax.cond(warm, scaled_start, lambda X0: (jnp.zeros_like(B), B), X0)
    Z = apply_Pinv(R0)
    state = (jnp.int32(0), X0, R0, Z, colsum(R0, Z), jnp.sqrt(colsum(R0, R0)) / b_safe)

    def cond(state):
        k, *_, res = state
        return (k < max_iter) & (jnp.max(res) > tol)

    def body(state):
        k, X, R, Pd, rz, res = state
        AP = apply_A(Pd)
        pAp = colsum(Pd, AP)
        step = jnp.where((res > tol) & (pAp > 0), rz / jnp.where(pAp > 0, pAp, 1.0), 0.0)
        X = X + step * Pd
        R = R - step * AP
        Z = apply_Pinv(R)
        rz_new = colsum(R, Z)
        beta = jnp.where(rz > 0, rz_new / jnp.where(rz > 0, rz, 1.0), 0.0)
        return k + 1, X, R, Z + beta * Pd, rz_new, jnp.sqrt(colsum(R, R)) / b_safe

    k, X, *_, res = jax.lax.while_loop(cond, body, state)
    R = B - apply_A(X)
    return PCGResult(X, k, jnp.max(res) <= tol, jnp.max(jnp.sqrt(colsum(R, R)) / b_safe))


def inverse_sqrt_psd(A: np.ndarray, rtol: float = RANK_RTOL) -> np.ndarray:
    """``A^(-1/2)`` (pseudo-inverse square root) of a symmetric PSD matrix, in float64,
    eigenvalues below ``rtol * max`` dropped."""
    evals, evecs = np.linalg.eigh((A + A.T) / 2.0)
    keep = evals > rtol * max(evals[-1], 0.0)
    return (evecs[:, keep] / np.sqrt(evals[keep])) @ evecs[:, keep].T


def nystrom_correction(gram: np.ndarray, reg: float, rtol: float = RANK_RTOL) -> np.ndarray:
    """The ``r x r`` matrix ``Q`` with ``P^-1 v = v + F Q F^T v`` (see the module docstring),
    from ``gram = F^T F`` in float64."""
    evals, evecs = np.linalg.eigh((gram + gram.T) / 2.0)
    keep = evals > rtol * max(evals[-1], 0.0)
    lam, V = evals[keep], evecs[:, keep]
    if lam.size == 0:
        return np.zeros_like(gram)
    scale = (lam[0] + reg) / (lam + reg) - 1.0
    return (V * (scale / lam)) @ V.T


@functools.partial(jax.jit, static_argnames=("mesh", "n"))
def landmark_factor(kernel: Kernel, X, landmarks, inv_sqrt, *, mesh, n):
    """``F = K(X, X_S) K_SS^(-1/2)`` (row-sharded, zero on padding rows) and ``F^T F``."""
    rows = X.shape[0] // num_shards(mesh)

    def local(kernel, X_local, S, root):
        mask = row_mask(rows, n, X_local.dtype)[:, None]
        F = mask * matmul(kernel(X_local, S), root)
        return F, jax.lax.psum(matmul(F.T, F), DATA)

    return jax.shard_map(local, mesh=mesh, in_specs=(REPLICATED, ROWS, REPLICATED, REPLICATED),
                         out_specs=(ROWS, REPLICATED), check_vma=False)(kernel, X, landmarks,
                                                                        inv_sqrt)


def kernel_rows(kernel: Kernel, X_local, X, p, block_size):
    """Inside ``shard_map``: ``K(X_local, X)`` (``(s, p s)``) assembled over the ring,
    shard ``j`` of ``X`` in columns ``j s .. (j+1) s``, written block by block into one
    buffer (``fill_row_blocks``: the kernel rows are held once). On one device the rows
    are the whole symmetric ``K(X, X)``: ``symmetric_kernel_matrix`` (half the products)."""
    if p == 1:
        return symmetric_kernel_matrix(kernel, X_local)
    s = X_local.shape[0]

    def place(acc, X_j, j):
        return fill_row_blocks(acc, lambda Xb: kernel(Xb, X_j), X_local, block_size, j * s)

    return ring_fold(place, jnp.zeros((s, s * p), X_local.dtype), X, p)


@functools.partial(
    jax.jit,
    static_argnames=("mesh", "n", "hold", "block_size", "max_iter"),
)
def cg_solve(kernel: Kernel, X, Y, F, Q, reg, tol, X0, warm, *, mesh, n, hold, block_size,
             max_iter):
    """PCG on ``(K + reg I) alpha = Y`` for row-sharded ``X`` (``(n_pad, d)``), ``Y``,
    from ``alpha = X0`` (row-sharded like ``Y``; its padding rows are ignored) when
    ``warm`` (a boolean array: the cold and warm solves share one compiled program), else
    from zero (``X0`` unused: no product spent on it).

    Returns a ``PCGResult`` with ``alpha`` row-sharded.
    """
    p = num_shards(mesh)
    rows = X.shape[0] // p

    def local(kernel, X_local, Y_local, F_local, Q, reg, tol, X0_local, warm):
        mask = row_mask(rows, n, X_local.dtype)[:, None]
        if hold:
            K_local = kernel_rows(kernel, X_local, X_local, p, block_size)

            def kernel_product(v):
                def add(acc, v_j, j):
                    return acc + matmul(jax.lax.dynamic_slice_in_dim(K_local, j * rows, rows, 1), v_j)

                return ring_fold(add, jnp.zeros_like(v), v, p)
        else:
            def kernel_product(v):
                def block(Xb):
                    return ring_sum(
                        lambda shard, _: matmul(kernel(Xb, shard[0]), shard[1]),
                        (X_local, v), p)

                return map_row_blocks(block, X_local, block_size)

        def apply_A(v):
            return mask * kernel_product(v) + reg * v

        def apply_Pinv(v):
            return v + matmul(F_local, matmul(Q, jax.lax.psum(matmul(F_local.T, v), DATA)))

        return pcg(apply_A, apply_Pinv, mask * Y_local, tol=tol, max_iter=max_iter,
                   total=lambda x: jax.lax.psum(x, DATA), X0=mask * X0_local, warm=warm)

    specs = (REPLICATED, ROWS, ROWS, ROWS, REPLICATED, REPLICATED, REPLICATED, ROWS, REPLICATED)
    return jax.shard_map(local, mesh=mesh, in_specs=specs,
                         out_specs=PCGResult._make((ROWS, REPLICATED, REPLICATED, REPLICATED)),
                         check_vma=False)(
        kernel, X, Y, F, Q, reg, tol, X0, warm)


def solve(X: Rows, Y: Rows, *, kernel: Kernel, reg, tol, max_iter, rank, hold, block_size,
          seed, init: jax.Array | None = None):
    """Exact kernel ridge regression by PCG; returns ``(PCGResult, seconds building the
    preconditioner)``, the solution as ``Rows``. ``init``: a starting point laid out like
    ``Y.data`` (``None``: zeros). See the module docstring."""
    tic = time.perf_counter()
    mesh = X.mesh
    rank = min(rank, X.n)
    idx = np.sort(np.random.default_rng(seed).choice(X.n, rank, replace=False))
    landmarks = jax.device_put(X.data[idx], jax.sharding.NamedSharding(mesh, REPLICATED))
    K_SS = np.asarray(train_kernel_matrix(landmarks, kernel), np.float64)
    root = jnp.asarray(inverse_sqrt_psd(K_SS), X.dtype)
    F, gram = landmark_factor(kernel, X.data, landmarks, root, mesh=mesh, n=X.n)
    Q = jnp.asarray(nystrom_correction(np.asarray(gram, np.float64), reg), X.dtype)
    precond_seconds = time.perf_counter() - tic
    X0 = jnp.zeros_like(Y.data) if init is None else init
    result = cg_solve(
        kernel, X.data, Y.data, F, Q, jnp.asarray(reg, X.dtype), jnp.asarray(tol, X.dtype), X0,
        jnp.asarray(init is not None), mesh=mesh, n=X.n, hold=hold, block_size=block_size,
        max_iter=max_iter)
    return result._replace(solution=Rows(result.solution, X.n)), precond_seconds
