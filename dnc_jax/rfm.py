"""Recursive Feature Machines (DESIGN.md, RFM): the shared "fit, then AGOP at the training
points" step that RFM and Deep RFM both iterate, and the RFM loop (``fit_rfm``). The
scikit-learn estimators around the loop are in ``dnc_jax.estimators``.

The step builds the training kernel matrix ``K`` and the gradient weights ``W`` once;
``K`` serves the Cholesky solve and ``W`` the closed-form AGOP, so no distance is
computed twice. RFM: start with ``T = I``; repeat ``iters`` times: fit on ``X T``, take
the AGOP with respect to ``x`` (``T A_z T``), normalise it, set ``T = AGOP^p``; finish
with a last fit. The kernel's metric on ``x`` is then ``AGOP^(2p)`` (``p = agop_power``).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from dnc_jax.agop import (
    coef_outer_centers,
    finish_agop,
    gradient_weights,
    gradients_from_weights,
    jacobian_sums,
    kernel_agop,
    matrix_power,
)
from dnc_jax.kernels import Radial, family_of, kernel_distances
from dnc_jax.precision import matmul
from dnc_jax.predictor import KernelPredictor
from dnc_jax.sharding import Rows, num_shards
from dnc_jax.solvers import (
    SolveInfo,
    SolverOptions,
    check_cholesky,
    cholesky_peak_matrices,
    choose_solver,
    fit_kernel_ridge,
    solve_kernel_system,
    validate_fit_inputs,
)


@functools.partial(jax.jit, static_argnames=("kernel",))
def _train_kernel_and_weights(Z, kernel, bandwidth):
    return gradient_weights(kernel_distances(Z, Z, kernel), kernel, bandwidth)


@functools.partial(jax.jit, static_argnames=("batch_size", "centered", "diag", "normalize"))
def _training_agop(W, coefs, Z, T, batch_size, centered, diag, normalize):
    coef_centers = coef_outer_centers(coefs, Z)

    def jac_fn(Wb, Zb):
        return gradients_from_weights(Wb, coefs, coef_centers, Zb)

    # the training rows are the whole batch: W (n x n) is not copied to pad it
    outer, total = jacobian_sums(jac_fn, (W, Z), batch_size, centered, diag and T is None,
                                 pad=False)
    return finish_agop(outer, total, Z.shape[0], centered, diag, normalize, T)


def fit_with_agop(
    Z: ArrayLike | Rows,
    Y: ArrayLike | Rows,
    *,
    kernel: str = "laplace",
    bandwidth: float = 1.0,
    reg: float = 1e-3,
    transform: ArrayLike | None = None,
    batch_size: int | None = 1024,
    centered: bool = False,
    diag: bool = False,
    normalize: str | None = None,
    solver: SolverOptions = SolverOptions(),
    agop_samples: int | None = None,
    seed: int = 0,
    mesh=None,
) -> tuple[KernelPredictor, jax.Array, SolveInfo]:
    """Fit kernel ridge regression on ``Z`` and return it with its AGOP at the training points.

    Args:
      Z: ``(n, d)`` inputs the kernel sees, ``Z = X T`` for a symmetric ``transform`` ``T``
        (or ``Rows`` on a mesh).
      Y: ``(n, C)`` targets.
      transform: ``T`` (``(d, d)``), or ``None`` for the identity; the AGOP returned is
        with respect to ``x``: ``T A_z T``.
      batch_size: training rows whose Jacobians are held at once.
      centered, diag, normalize: as in ``agop``.
      solver: how the fit is solved (``SolverOptions``; the default picks by size).
      agop_samples: estimate the AGOP from this many training rows (seeded by ``seed``),
        as xRFM does (its default is 20,000); ``None`` uses all ``n``.
      seed: seeds the sampled rows, Nyström centres and CG landmarks.
      mesh: shard the rows over this mesh (``dnc_jax.sharding.data_mesh``).

    Returns:
      ``(predictor on Z, AGOP (d, d) or (d,), SolveInfo)``. The AGOP equals
      ``kernel_agop(predictor, Z)`` sandwiched by ``T``. With a one-device Cholesky solve
      and every row in the AGOP, the distances are computed once for both.
    """
    Z, Y = validate_fit_inputs(Z, Y, kernel, bandwidth, reg)
    solver.validate()
    if mesh is None and isinstance(Z, Rows):
        mesh = Z.mesh
    one_device = mesh is None or num_shards(mesh) == 1
    # K and the gradient weights held together (a radial kernel's closed form)
    shared = one_device and agop_samples is None and isinstance(family_of(kernel), Radial)
    matrices = cholesky_peak_matrices(agop=shared)
    method = choose_solver(solver.solver, Z.shape[0], mesh, solver.centers,
                           itemsize=Z.dtype.itemsize, matrices=matrices)
    T = None if transform is None else jnp.asarray(transform, Z.dtype)
    batch = Z.shape[0] if batch_size is None else min(int(batch_size), Z.shape[0])
    if method == "cholesky" and shared:
        check_cholesky(Z.shape[0], Z.dtype.itemsize, matrices)
        Z = Z.valid() if isinstance(Z, Rows) else Z
        Y = Y.valid() if isinstance(Y, Rows) else Y
        tic = time.perf_counter()
        K, W = _train_kernel_and_weights(Z, kernel, bandwidth)
        K.block_until_ready()
        kernel_seconds = time.perf_counter() - tic
        coefs = solve_kernel_system(K, Z, Y, reg, kernel=kernel, bandwidth=bandwidth)
        del K
        A = _training_agop(W, coefs, Z, T, batch, centered, diag, normalize)
        info = SolveInfo("cholesky", 0, None, None, kernel_seconds,
                         time.perf_counter() - tic - kernel_seconds)
        return KernelPredictor(Z, coefs, None, kernel, float(bandwidth)), A, info
    options = dataclasses.asdict(solver) | {"solver": method}
    predictor, info = fit_kernel_ridge(Z, Y, kernel=kernel, bandwidth=bandwidth, reg=reg,
                                       mesh=mesh, seed=seed, **options)
    A = kernel_agop(predictor, Z, batch_size=batch, centered=centered,
                    diag=diag and T is None, samples=agop_samples, seed=seed, mesh=mesh)
    return predictor, finish_agop(A, None, 1, False, diag, normalize, T), info


class RFMFit(NamedTuple):
    """What ``fit_rfm`` returns: the kernel's transform ``T`` (``(d, d)``), the predictor on
    ``X T``, the last AGOP (``None`` when ``iters = 0``), one record per fit, and the
    iteration they come from."""

    transform: jax.Array
    predictor: KernelPredictor
    agop: np.ndarray | None
    history: list[dict]
    best_iter: int


def fit_rfm(
    X: jax.Array,
    Y: ArrayLike,
    *,
    kernel: str,
    bandwidth: float,
    reg: float,
    iters: int,
    agop_power: float,
    normalize: str | None,
    centered: bool,
    diag: bool,
    batch_size: int | None,
    solver: SolverOptions,
    agop_samples: int | None,
    seed: int,
    mesh=None,
    score: Callable[[jax.Array, KernelPredictor], float] | None = None,
) -> RFMFit:
    """The RFM loop (module docstring) on ``X`` (``(n, d)`` float32) and targets ``Y``
    (``(n, C)``): ``iters`` AGOP updates, then a final fit.

    The options are those of ``fit_with_agop`` and have no defaults here: the estimators
    (``dnc_jax.estimators.RFM``) hold them; ``agop_power`` is ``p`` (``T = AGOP^p``).
    With ``score`` (``(T, predictor) -> float``, higher is better, e.g. a validation
    accuracy) every fit is scored and the best one is returned; otherwise the last.
    """
    transform = jnp.eye(X.shape[1], dtype=jnp.float32)
    history: list[dict] = []
    best = (-np.inf, None)
    A = None
    for it in range(int(iters) + 1):
        last = it == int(iters)
        Z = matmul(X, transform)
        if last:  # the final fit needs no AGOP
            predictor, info = fit_kernel_ridge(
                Z, Y, kernel=kernel, bandwidth=bandwidth, reg=reg, mesh=mesh, seed=seed,
                **dataclasses.asdict(solver))
        else:
            predictor, A, info = fit_with_agop(
                Z, Y, kernel=kernel, bandwidth=bandwidth, reg=reg,
                transform=None if it == 0 else transform, batch_size=batch_size,
                centered=centered, diag=diag, normalize=normalize, solver=solver,
                agop_samples=agop_samples, seed=seed, mesh=mesh,
            )
        record = {"iter": it, "solve": info.to_dict()}
        if score is not None:
            record["val_score"] = score(transform, predictor)
            if record["val_score"] > best[0]:
                best = (record["val_score"], (it, transform, predictor))
        history.append(record)
        if not last:
            A = np.asarray(A)
            transform = matrix_power(np.diag(A) if diag else A,
                                     float(agop_power)).astype(jnp.float32)
    best_iter, transform, predictor = best[1] if score is not None else (
        int(iters), transform, predictor)
    return RFMFit(transform, predictor, A, history, best_iter)
