"""Recursive Feature Machines (DESIGN.md, RFM): the "fit, then AGOP at the training points"
step that every loop of the library iterates (``fit_rfm``, Deep RFM, grokking,
multi-index), as a pure function (``rfm_step``) and in its shell (``fit_with_agop``), and
the RFM loop (``fit_rfm``). The scikit-learn estimators are in ``dnc_jax.estimators``.

The step builds the training kernel matrix ``K`` and the gradient weights ``W`` once;
``K`` serves the Cholesky solve and ``W`` the closed-form AGOP, so no distance is
computed twice. RFM: start with ``T = I``; repeat ``iters`` times: fit on ``X T``, take
the AGOP with respect to ``x`` (``T A_z T``), normalise it, set ``T = AGOP^p``; finish
with a last fit. The kernel's metric on ``x`` is then ``AGOP^(2p)`` (``p = agop_power``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.typing import ArrayLike

from dnc_jax import _checks
from dnc_jax.gradient_outer_product import (
    AGOP_BATCH,
    adaptive_kernel_agop_checked,
    check_agop_samples,
    check_normalize,
    coef_outer_centers,
    finish_agop,
    gradients_from_weights,
    jacobian_sums,
    kernel_agop,
    kernel_agop_checked,
    matrix_power,
)
from dnc_jax.kernels import Kernel, family_of
from dnc_jax.precision import matmul
from dnc_jax.predictor import KernelPredictor
from dnc_jax.rows import Rows, num_shards
from dnc_jax.sharding import check_mesh
from dnc_jax.solvers import (
    SolveInfo,
    SolverOptions,
    check_cholesky,
    cholesky_peak_matrices,
    choose_solver,
    solve_kernel_system,
    validate_fit_inputs,
)
from dnc_jax.solvers.core import checked_inputs, fit
from dnc_jax.solvers.ridge import solve_checked


@jax.jit
def _train_kernel_and_weights(kernel: Kernel, Z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The training kernel matrix and gradient weights of a radial ``kernel`` at ``Z``,
    ``(n, n)`` each, from one distance matrix."""
    return kernel.gradient_weights(kernel.distances(Z, Z))


@functools.partial(jax.jit, static_argnames=("batch_size", "centered", "diag", "normalize"))
def _training_agop(W, coefs, Z, T, batch_size, centered, diag, normalize):
    coef_centers = coef_outer_centers(coefs, Z)

    def jac_fn(Wb, Zb):
        return gradients_from_weights(Wb, coefs, coef_centers, Zb)

    # the training rows are the whole batch: W (n x n) is not copied to pad it
    outer, total = jacobian_sums(jac_fn, (W, Z), batch_size, centered, diag and T is None,
                                 pad=False)
    return finish_agop(outer, total, Z.shape[0], centered, diag, normalize, T)


def _radial_step(kernel, Z, T, solve, batch, centered, diag, normalize):
    """The step on one device for a radial kernel: ``K`` and the gradient weights ``W``
    from one distance matrix, ``coefs = solve(K)``, the AGOP from ``W``. ``solve`` is
    ``jax.scipy``'s Cholesky in the traceable ``rfm_step`` and the checked ``solve_psd``
    (float64 and jitter retries) in ``fit_with_agop``."""
    K, W = _train_kernel_and_weights(kernel, Z)
    coefs = solve(K)
    del K
    return coefs, _training_agop(W, coefs, Z, T, batch, centered, diag, normalize)


def rfm_step(
    kernel: Kernel,
    X: ArrayLike,
    Y: ArrayLike,
    reg: ArrayLike = 1e-3,
    transform: ArrayLike | None = None,
    *,
    centered: bool = False,
    diag: bool = False,
    normalize: str | None = None,
    batch_size: int | None = None,
    solver: str = "cholesky",
) -> tuple[KernelPredictor, jax.Array]:
    """One RFM step as a pure function: fit on ``Z = X T``, then the AGOP of that fit with
    respect to ``x`` at the training rows, ``T A_z T`` (DESIGN.md, RFM).

    Supports ``jax.jit``, ``jax.vmap`` (bandwidths, ridges, transforms, data sets of one
    shape) and ``jax.grad``. It is the step ``fit_with_agop`` takes on one device, without
    the shell's memory check, solver choice and retries (see ``solvers.core.fit``).

    Args:
      kernel: a ``Kernel`` value without a metric (the step's metric is ``T``).
      X: ``(n, d)``; Y: ``(n, C)`` (or ``(n,)``); reg: the ridge (a leaf).
      transform: ``T`` (``(d, d)``, symmetric) or ``None`` for the identity.
      centered: as in ``agop``.
      diag: as in ``agop``.
      normalize: as in ``agop``.
      batch_size: rows per AGOP batch.
      solver: ``"cholesky"`` or ``"cg"``.

    Returns:
      ``(predictor on Z, AGOP (d, d) or (d,))``.
    """
    X, Y = checked_inputs(kernel, X, Y, reg)
    if kernel.M is not None:
        raise ValueError("rfm_step's metric is its transform T: pass a Kernel without M.")
    T = None if transform is None else jnp.asarray(transform, X.dtype)
    Z = X if T is None else matmul(X, T)
    normalize = check_normalize(normalize)
    if solver == "cholesky" and kernel.radial:
        kernel = Kernel(kernel.family, jnp.asarray(kernel.bandwidth, X.dtype))
        ridge = jnp.asarray(reg, X.dtype) * jnp.eye(X.shape[0], dtype=X.dtype)

        def solve(K):
            return jax.scipy.linalg.cho_solve(
                jax.scipy.linalg.cho_factor(K + ridge, lower=True), Y)

        coefs, A = _radial_step(kernel, Z, T, solve, batch_size or X.shape[0], centered, diag,
                                normalize)
        return KernelPredictor(kernel, Z, coefs), A
    predictor = fit(kernel, Z, Y, reg, solver=solver)
    A = kernel_agop(predictor, Z, batch_size=batch_size, centered=centered,
                    diag=diag and T is None)
    return predictor, finish_agop(A, None, 1, False, diag, normalize, T)


def fit_with_agop(
    Z: ArrayLike | Rows,
    Y: ArrayLike | Rows,
    *,
    kernel: str = "laplace",
    bandwidth: float = 1.0,
    reg: float = 1e-3,
    transform: ArrayLike | None = None,
    batch_size: int | None = AGOP_BATCH,
    centered: bool = False,
    diag: bool = False,
    normalize: str | None = None,
    solver: SolverOptions = SolverOptions(),
    agop_samples: int | str | None = None,
    metric_power: float = 1.0,
    init: jax.Array | None = None,
    seed: int = 0,
    mesh=None,
) -> tuple[KernelPredictor, jax.Array, SolveInfo]:
    """The RFM step of every loop in the library (``fit_rfm``, Deep RFM, grokking,
    multi-index): fit kernel ridge regression on ``Z`` and return it with its AGOP at the
    training points. The shell around ``rfm_step``: it checks memory, chooses the solver,
    shards and retries; call it eagerly.

    Args:
      Z: ``(n, d)`` inputs the kernel sees, ``Z = X T`` for a symmetric ``transform`` ``T``
        (or ``Rows`` on a mesh).
      Y: ``(n, C)`` targets.
      transform: ``T`` (``(d, d)``), or ``None`` for the identity; the AGOP returned is
        with respect to ``x``: ``T A_z T``.
      batch_size: training rows whose Jacobians are held at once.
      centered: as in ``agop``.
      diag: as in ``agop``.
      normalize: as in ``agop``.
      solver: how the fit is solved (``SolverOptions``; the default picks by size).
      agop_samples: estimate the AGOP from this many training rows (seeded by ``seed``),
        as xRFM does (its default is 20,000); ``"auto"``: as many as it needs
        (``adaptive_kernel_agop``: doubling rounds until the distances it makes settle);
        ``None`` uses all ``n``. ``SolveInfo.agop_rows`` says how many were used.
      metric_power: the power of the AGOP that the next kernel's metric is (``fit_rfm``:
        ``2 agop_power``; Deep RFM: 1, the features ``relu(W M^(1/2) x)`` with Gaussian
        ``W`` keep ``delta^T M delta``); ``agop_samples="auto"`` judges when the AGOP
        has settled by the distances ``delta^T A^s delta`` of this power ``s``.
      init: CG's starting coefficients (a warm start): the ``coefs`` of the previous fit
        on the same rows, as ``fit_rfm`` passes them; ignored by the direct solvers.
      seed: seeds the sampled rows, Nyström centres and CG landmarks.
      mesh: shard the rows over this mesh (``dnc_jax.sharding.data_mesh``).

    Returns:
      ``(predictor on Z, AGOP (d, d) or (d,), SolveInfo)``. The AGOP equals
      ``kernel_agop(predictor, Z)`` sandwiched by ``T``. With a one-device Cholesky solve
      and every row in the AGOP, the distances are computed once for both.
    """
    value = Kernel(kernel, bandwidth)
    Z, Y = validate_fit_inputs(Z, Y, value, reg)
    if not _checks.is_traced(bandwidth):  # checked above: a plain number in the predictor
        value = Kernel(kernel, float(bandwidth))
    if mesh is None and isinstance(Z, Rows):
        mesh = Z.mesh
    return fit_with_agop_checked(
        Z, Y, value, reg, transform=transform, batch_size=batch_size, centered=centered,
        diag=diag, normalize=check_normalize(normalize), solver=solver,
        agop_samples=check_agop_options(agop_samples, centered), metric_power=metric_power,
        init=init, seed=seed, mesh=None if mesh is None else check_mesh(mesh))


def check_agop_options(agop_samples, centered: bool):
    """``agop_samples``, or a ``ValueError`` for one ``check_agop_samples`` refuses or for
    ``"auto"`` with ``centered``."""
    check_agop_samples(agop_samples)
    if agop_samples == "auto" and centered:
        raise ValueError("agop_samples='auto' estimates the uncentred AGOP (a mean over rows, "
                         "grown round by round); use a fixed count or None with centered.")
    return agop_samples


def fit_with_agop_checked(
    Z: jax.Array | Rows,
    Y: jax.Array | Rows,
    kernel: Kernel,
    reg: float,
    *,
    batch_size: int | None,
    solver: SolverOptions,
    transform: ArrayLike | None = None,
    centered: bool = False,
    diag: bool = False,
    normalize: str | None = None,
    agop_samples: int | str | None = None,
    metric_power: float = 1.0,
    init: jax.Array | None = None,
    seed: int = 0,
    mesh: Mesh | None = None,
) -> tuple[KernelPredictor, jax.Array, SolveInfo]:
    """``fit_with_agop`` on inputs its entry has checked (``validate_fit_inputs``,
    ``check_normalize``, ``check_agop_options``, ``check_mesh``): the loops that check their
    rows once and then step on them (``fit_rfm``, Deep RFM's layers, grokking,
    multi-index) call it. ``kernel`` is the ``Kernel`` value; the options are
    ``fit_with_agop``'s (the ones given a value here are neutral: off, all rows, one
    device)."""
    one_device = mesh is None or num_shards(mesh) == 1
    # K and the gradient weights held together (a radial kernel's closed form)
    shared = one_device and agop_samples is None and kernel.radial
    matrices = cholesky_peak_matrices(agop=shared)
    method = choose_solver(solver.solver, Z.shape[0], mesh, solver.centers,
                           itemsize=Z.dtype.itemsize, matrices=matrices)
    T = None if transform is None else jnp.asarray(transform, Z.dtype)
    batch = Z.shape[0] if batch_size is None else min(int(batch_size), Z.shape[0])
    if method == "cholesky" and shared:
        check_cholesky(Z.shape[0], Z.dtype.itemsize, matrices)
        Z = Z.valid() if isinstance(Z, Rows) else Z
        Y = Y.valid() if isinstance(Y, Rows) else Y
        seconds = {"start": time.perf_counter()}

        def solve(K):
            K.block_until_ready()
            seconds["kernel"] = time.perf_counter() - seconds["start"]
            return solve_kernel_system(K, Z, Y, reg, kernel=kernel)

        coefs, A = _radial_step(kernel, Z, T, solve, batch, centered, diag, normalize)
        info = SolveInfo("cholesky", 0, None, None, seconds["kernel"],
                         time.perf_counter() - seconds["start"] - seconds["kernel"],
                         Z.shape[0])
        return KernelPredictor(kernel, Z, coefs), A, info
    predictor, info = _solve(Z, Y, kernel, reg, solver, method, mesh=mesh, seed=seed, init=init)
    if agop_samples == "auto":
        A, used = adaptive_kernel_agop_checked(predictor, Z, power=metric_power, seed=seed,
                                               batch_size=batch, diag=diag and T is None,
                                               mesh=mesh)
    else:
        count = None if agop_samples is None else int(agop_samples)
        A = kernel_agop_checked(predictor, Z, batch_size=batch, centered=centered,
                                diag=diag and T is None, normalize=None, samples=count, seed=seed,
                                mesh=mesh)
        used = Z.shape[0] if count is None else min(count, Z.shape[0])
    return (predictor, finish_agop(A, None, 1, False, diag, normalize, T),
            info._replace(agop_rows=used))


def _solve(Z, Y, kernel: Kernel, reg, solver: SolverOptions, method: str, *, mesh, seed, init):
    """``solve_checked`` with the options ``solver`` holds (checked when it was built), on
    rows and a kernel checked at the entry."""
    return solve_checked(Z, Y, kernel=kernel, reg=reg, block_size=None, method=method,
                         centers=solver.centers, tol=solver.tol, max_iter=solver.max_iter,
                         precond_rank=solver.precond_rank, memory_budget=solver.memory_budget,
                         mesh=mesh, seed=seed, init=init)


class RFMIteration(NamedTuple):
    """One fit of the RFM loop: ``iter`` (the last one is the final fit, without an AGOP
    update), how it was solved (``SolveInfo``; its ``agop_rows`` the rows of its AGOP) and
    its ``val_score`` (``fit_rfm``'s ``score``; ``None`` without one)."""

    iter: int
    solve: SolveInfo
    val_score: float | None = None

    def to_json(self) -> dict:
        """``{"iter", "solve", "val_score"}`` (no ``val_score`` key without a score)."""
        data = {"iter": self.iter, "solve": self.solve.to_dict()}
        if self.val_score is not None:
            data["val_score"] = self.val_score
        return data

    @classmethod
    def from_json(cls, data: dict) -> RFMIteration:
        """The record from its ``to_json`` form."""
        return cls(data["iter"], SolveInfo(**data["solve"]), data.get("val_score"))


class RFMFit(NamedTuple):
    """What ``fit_rfm`` returns: the kernel's transform ``T`` (``(d, d)``), the predictor on
    ``X T``, the last AGOP (``None`` when ``iters = 0``), one record per fit, and the
    iteration they come from."""

    transform: jax.Array
    predictor: KernelPredictor
    agop: jax.Array | np.ndarray | None
    history: list[RFMIteration]
    best_iter: int


class RFMStep(NamedTuple):
    """One step of the RFM loop (``rfm_loop``): its index, the transform ``T`` it fitted on
    (``None``: the identity), the predictor on ``X T``, its AGOP with respect to ``x``, how
    it was solved (``None`` where the step does not say) and the next step's transform,
    ``update(agop)``."""

    step: int
    transform: jax.Array | None
    predictor: KernelPredictor
    agop: jax.Array
    info: SolveInfo | None
    next_transform: jax.Array


def rfm_loop(
    step: Callable[[jax.Array | None, RFMStep | None],
                   tuple[KernelPredictor, jax.Array, SolveInfo | None]],
    update: Callable[[jax.Array], jax.Array],
    steps: int,
    transform: jax.Array | None = None,
) -> Iterator[RFMStep]:
    """The RFM loop, written once for every loop of the library (``fit_rfm`` eager and
    traced, grokking, multi-index): for ``steps`` steps, fit on ``X T`` and take the AGOP
    there, ``step(T, previous) -> (predictor, AGOP, SolveInfo | None)`` (``previous``: the
    last ``RFMStep``, e.g. for a warm start; ``None`` first), then the metric update
    ``T = update(AGOP)`` (``AGOP^p``, or any map the caller passes). ``transform``: the
    first ``T`` (``None``: the identity). Yields one ``RFMStep`` per step.

    Traceable when ``step`` and ``update`` are (the Python loop unrolls: ``steps`` is
    static). Deep RFM takes one step per layer on new features: it calls
    ``fit_with_agop`` (the step) directly.
    """
    T, previous = transform, None
    for index in range(int(steps)):
        predictor, A, info = step(T, previous)
        previous = RFMStep(index, T, predictor, A, info, update(A))
        yield previous
        T = previous.next_transform


def fit_rfm(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    kernel: str = "laplace",
    bandwidth: float = 10.0,
    reg: float = 1e-3,
    iters: int = 3,
    agop_power: float = 0.5,
    normalize: str | None = "max",
    centered: bool = False,
    diag: bool = False,
    batch_size: int | None = AGOP_BATCH,
    solver: SolverOptions = SolverOptions(),
    agop_samples: int | str | None = None,
    warm_start: bool = True,
    seed: int = 0,
    mesh=None,
    score: Callable[[jax.Array, KernelPredictor], float] | None = None,
) -> RFMFit:
    """The RFM loop (module docstring) on ``X`` (``(n, d)``) and targets ``Y`` (``(n, C)``):
    ``iters`` AGOP updates, then a final fit, in ``X``'s float dtype.

    The defaults are those of ``dnc_jax.estimators.RFM``; the options are those of
    ``fit_with_agop``, and ``agop_power`` is ``p`` (``T = AGOP^p``). With ``score``
    (``(T, predictor) -> float``, higher is better, e.g. a validation accuracy) every fit
    is scored and the best one is returned; otherwise the last. ``warm_start``: each CG
    solve starts from the previous fit's coefficients (the same rows and targets; only the
    metric moved), not from zero.

    Under ``jax.jit`` / ``vmap`` / ``grad`` (traced ``X``, ``Y``, ``bandwidth`` or
    ``reg``) every step is ``rfm_step`` (``solver.solver`` ``"cholesky"`` or ``"cg"``,
    every row in the AGOP, one device, no ``score``) and ``history`` is empty.
    """
    family_of(kernel)  # ValueError for an unknown kernel, before any work
    normalize = check_normalize(normalize)
    check_agop_options(agop_samples, centered)
    if isinstance(iters, bool) or not isinstance(iters, int | np.integer) or iters < 0:
        raise ValueError(f"iters must be an int >= 0; got {iters!r}.")
    if not np.isfinite(agop_power):
        raise ValueError(f"agop_power must be a finite number; got {agop_power!r}.")
    if _checks.is_traced(X, Y, bandwidth, reg):
        return _traced_rfm(X, Y, Kernel(kernel, bandwidth), reg, iters, agop_power, normalize,
                           centered, diag, batch_size, solver, agop_samples, mesh, score)
    if isinstance(X, Rows) or isinstance(Y, Rows):
        raise ValueError("fit_rfm takes arrays X and Y; pass mesh= to shard their rows.")
    value = Kernel(kernel, bandwidth)
    X, Y = validate_fit_inputs(X, Y, value, reg)  # once: every step below trusts them
    value = Kernel(kernel, float(bandwidth))
    mesh = None if mesh is None else check_mesh(mesh)
    identity = jnp.eye(X.shape[1], dtype=X.dtype)

    def warm(previous: RFMStep | None) -> jax.Array | None:
        """CG starts from the previous fit's coefficients (same rows and targets)."""
        if (warm_start and previous is not None and previous.info is not None
                and previous.info.solver == "cg"):
            return previous.predictor.coefs
        return None

    def step(T, previous):
        return fit_with_agop_checked(
            matmul(X, identity if T is None else T), Y, value, reg, transform=T,
            batch_size=batch_size, centered=centered, diag=diag, normalize=normalize,
            solver=solver, agop_samples=agop_samples, metric_power=2 * float(agop_power),
            init=warm(previous), seed=seed, mesh=mesh)

    def update(A):
        A_host = np.asarray(A)
        return matrix_power(np.diag(A_host) if diag else A_host,
                            float(agop_power)).astype(X.dtype)

    history: list[RFMIteration] = []
    best_score, best = -np.inf, (int(iters), identity, None)

    def record(it: int, T, predictor: KernelPredictor, info: SolveInfo) -> None:
        """One fit into ``history``, scored; the best scored fit kept."""
        nonlocal best_score, best
        value = None if score is None else float(score(T, predictor))
        if value is not None and value > best_score:
            best_score, best = value, (it, T, predictor)
        history.append(RFMIteration(it, info, value))

    last = None
    for last in rfm_loop(step, update, int(iters)):
        record(last.step, identity if last.transform is None else last.transform,
               last.predictor, cast(SolveInfo, last.info))
    transform = identity if last is None else last.next_transform
    final = matmul(X, transform)  # the final fit needs no AGOP
    method = choose_solver(solver.solver, X.shape[0], mesh, solver.centers,
                           itemsize=X.dtype.itemsize)
    predictor, info = _solve(final, Y, value, reg, solver, method, mesh=mesh, seed=seed,
                             init=warm(last))
    record(int(iters), transform, predictor, info)
    if score is not None and best[2] is not None:
        best_iter, transform, predictor = best
    else:
        best_iter = int(iters)
    A = None if last is None else np.asarray(last.agop)
    return RFMFit(transform, predictor, A, history, best_iter)


def _traced_rfm(X, Y, kernel: Kernel, reg, iters, agop_power, normalize, centered, diag,
                batch_size, solver, agop_samples, mesh, score) -> RFMFit:
    """``fit_rfm`` under a transformation: ``iters`` ``rfm_step``s and a final ``fit``."""
    if mesh is not None or agop_samples is not None or score is not None:
        raise ValueError("fit_rfm under jax.jit / vmap / grad runs on one device with every "
                         "row in the AGOP and no score: pass mesh=None, agop_samples=None, "
                         "score=None (or call it eagerly).")
    method = "cholesky" if solver.solver in ("auto", "cholesky") else solver.solver
    if method not in ("cholesky", "cg") or solver.centers is not None:
        raise ValueError("fit_rfm under jax.jit / vmap / grad solves by 'cholesky' or 'cg'; "
                         f"got solver={solver.solver!r}, centers={solver.centers!r}.")
    X = _checks.as_float_matrix("X", X)

    def step(T, _):
        predictor, A = rfm_step(kernel, X, Y, reg, T, centered=centered, diag=diag,
                                normalize=normalize, batch_size=batch_size, solver=method)
        return predictor, A, None

    def update(A):
        return matrix_power(jnp.diag(A) if diag else A, agop_power).astype(X.dtype)

    steps = list(rfm_loop(step, update, int(iters)))
    last = steps[-1] if steps else None
    transform = jnp.eye(X.shape[1], dtype=X.dtype) if last is None else last.next_transform
    predictor = fit(kernel, matmul(X, transform), Y, reg, solver=method)
    return RFMFit(transform, predictor, None if last is None else last.agop, [], int(iters))
