"""Recursive Feature Machines (DESIGN.md, RFM) and the shared "fit, then AGOP at the
training points" step that RFM and Deep RFM both iterate.

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

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from dnc_jax.agop import (
    coef_outer_centers,
    finish_agop,
    gradient_weights,
    gradients_from_weights,
    jacobian_sums,
    kernel_agop,
    matrix_power,
)
from dnc_jax.data import one_hot_pm1
from dnc_jax.kernels import kernel_distances
from dnc_jax.precision import matmul
from dnc_jax.predictor import KernelPredictor
from dnc_jax.sharding import Rows, data_mesh, num_shards
from dnc_jax.solvers import (
    SolveInfo,
    SolverOptions,
    choose_solver,
    fit_kernel_ridge,
    solve_kernel_system,
    validate_fit_inputs,
)


@functools.partial(jax.jit, static_argnames=("kernel", "bandwidth"))
def _train_kernel_and_weights(Z, kernel, bandwidth):
    return gradient_weights(kernel_distances(Z, Z, kernel), kernel, bandwidth)


@functools.partial(jax.jit, static_argnames=("batch_size", "centered", "diag", "normalize"))
def _training_agop(W, coefs, Z, T, batch_size, centered, diag, normalize):
    coef_centers = coef_outer_centers(coefs, Z)

    def jac_fn(Wb, Zb):
        return gradients_from_weights(Wb, coefs, coef_centers, Zb)

    outer, total = jacobian_sums(jac_fn, (W, Z), batch_size, centered, diag and T is None)
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
    method = choose_solver(solver.solver, Z.shape[0], mesh, solver.centers,
                           itemsize=Z.dtype.itemsize, memory_budget=solver.memory_budget)
    T = None if transform is None else jnp.asarray(transform, Z.dtype)
    batch = Z.shape[0] if batch_size is None else min(int(batch_size), Z.shape[0])
    one_device = mesh is None or num_shards(mesh) == 1
    if method == "cholesky" and one_device and agop_samples is None:
        Z = Z.valid() if isinstance(Z, Rows) else Z
        Y = Y.valid() if isinstance(Y, Rows) else Y
        tic = time.perf_counter()
        K, W = _train_kernel_and_weights(Z, kernel, float(bandwidth))
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


class RFM(BaseEstimator):
    """Recursive Feature Machine (Radhakrishnan et al., Science 2024), scikit-learn API.

    Parameters:
      kernel: ``"laplace"`` or ``"gaussian"``.
      bandwidth: kernel bandwidth ``L``.
      reg: ridge.
      iters: number of AGOP updates before the final fit.
      agop_power: ``p``; the kernel sees ``x AGOP^p`` (xRFM's naming; 0.5 = metric AGOP).
      normalize: AGOP normalisation before the power: ``"max"``, ``"trace"`` or ``None``.
      centered, diag: AGOP options (see ``agop``).
      task: ``"classification"`` (``{-1, +1}`` one-hot targets, argmax prediction) or
        ``"regression"``.
      batch_size: training rows whose Jacobians are held at once.
      solver, centers, tol, cg_max_iter, precond_rank: how each kernel fit is solved
        (``fit_kernel_ridge``; ``cg_max_iter`` is its ``max_iter``); ``centers`` (an
        int) makes every fit a Nyström machine.
      agop_samples: AGOP from this many seeded training rows (``None``: all).
      devices: ``None`` (one device), ``"all"`` or a count: rows sharded over a data mesh.
      seed: seeds sampled rows, centres and landmarks.

    Fitted attributes: ``transform_`` (``T``, ``(d, d)``), ``agop_`` (the last AGOP),
    ``predictor_`` (``KernelPredictor`` on ``X T``), ``history_`` (per-iteration dicts),
    ``best_iter_``, ``classes_`` (classification), ``n_features_in_``.
    """

    def __init__(
        self,
        kernel: str = "laplace",
        bandwidth: float = 10.0,
        reg: float = 1e-3,
        iters: int = 3,
        agop_power: float = 0.5,
        normalize: str | None = "max",
        centered: bool = False,
        diag: bool = False,
        task: str = "classification",
        batch_size: int | None = 1024,
        solver: str = "auto",
        centers: int | None = None,
        agop_samples: int | None = None,
        tol: float = 1e-6,
        cg_max_iter: int = 1000,
        precond_rank: int = 500,
        devices: str | int | None = None,
        seed: int = 0,
    ):
        _fixed_task_init(self, kernel, bandwidth, reg, iters, agop_power, normalize, centered,
                         diag, batch_size, solver, centers, agop_samples, tol, cg_max_iter,
                         precond_rank, devices, seed)
        self.task = task

    # -------------------------------------------------------------- helpers

    def _targets(self, y):
        if self.task == "classification":
            self._encoder = LabelEncoder().fit(y)
            self.classes_ = self._encoder.classes_
            return one_hot_pm1(self._encoder.transform(y), len(self.classes_))
        y = np.asarray(y, dtype=np.float64)
        self._single_output = y.ndim == 1
        return (y[:, None] if y.ndim == 1 else y).astype(np.float32)

    def _decode(self, raw: np.ndarray):
        if self.task == "classification":
            return self.classes_[np.argmax(raw, axis=1)]
        return raw[:, 0] if self._single_output else raw

    def _score_raw(self, raw, y) -> float:
        """Higher is better: accuracy, or negative mean squared error."""
        if self.task == "classification":
            return float(np.mean(self._decode(raw) == np.asarray(y)))
        target = np.asarray(y, dtype=np.float64).reshape(raw.shape[0], -1)
        return -float(np.mean((raw - target) ** 2))

    def _raw_predict(self, X, transform, predictor):
        Z = matmul(jnp.asarray(X, jnp.float32), transform)
        return np.asarray(predictor.predict(Z), dtype=np.float64)

    # -------------------------------------------------------------- API

    def fit(self, X, y, X_val=None, y_val=None):
        """Fit; with ``(X_val, y_val)`` keep the iteration that scores best on them."""
        if self.task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression'; got {self.task!r}.")
        if int(self.iters) < 0:
            raise ValueError(f"iters must be >= 0; got {self.iters}.")
        regression = self.task == "regression"
        X, y = validate_data(self, X, y, multi_output=regression, y_numeric=regression)
        if not regression:
            check_classification_targets(y)
            if len(np.unique(y)) < 2:
                raise ValueError("RFM classification needs at least 2 classes in y; got 1 class.")
        Y = self._targets(y)
        options = SolverOptions(self.solver, self.centers, self.tol, self.cg_max_iter,
                                self.precond_rank)
        options.validate()
        mesh = None if self.devices is None else data_mesh(self.devices)
        Xj = jnp.asarray(X, jnp.float32)
        d = X.shape[1]
        transform = jnp.eye(d, dtype=jnp.float32)
        use_val = X_val is not None and y_val is not None
        if use_val:
            X_val = validate_data(self, X_val, reset=False)
        self.history_ = []
        best = (-np.inf, None)
        for it in range(int(self.iters) + 1):
            last = it == int(self.iters)
            Z = matmul(Xj, transform)
            if last:  # the final fit needs no AGOP
                predictor, info = fit_kernel_ridge(
                    Z, Y, kernel=self.kernel, bandwidth=self.bandwidth, reg=self.reg, mesh=mesh,
                    seed=self.seed, **dataclasses.asdict(options))
            else:
                predictor, A, info = fit_with_agop(
                    Z, Y, kernel=self.kernel, bandwidth=self.bandwidth, reg=self.reg,
                    transform=None if it == 0 else transform, batch_size=self.batch_size,
                    centered=self.centered, diag=self.diag, normalize=self.normalize,
                    solver=options, agop_samples=self.agop_samples, seed=self.seed, mesh=mesh,
                )
            record = {"iter": it, "solve": info.to_dict()}
            if use_val:
                record["val_score"] = self._score_raw(
                    self._raw_predict(X_val, transform, predictor), y_val
                )
                if record["val_score"] > best[0]:
                    best = (record["val_score"], (it, transform, predictor))
            self.history_.append(record)
            if not last:
                self.agop_ = np.asarray(A)
                M = np.diag(self.agop_) if self.diag else self.agop_
                transform = matrix_power(M, float(self.agop_power)).astype(jnp.float32)
        chosen = best[1] if use_val else (int(self.iters), transform, predictor)
        self.best_iter_, self.transform_, self.predictor_ = chosen
        return self

    def _outputs(self, X) -> np.ndarray:
        check_is_fitted(self, "predictor_")
        X = validate_data(self, X, reset=False)
        return self._raw_predict(X, self.transform_, self.predictor_)

    @available_if(lambda self: self.task == "classification")
    def decision_function(self, X) -> np.ndarray:
        """Predictor outputs ``(n, C)``; for two classes ``(n,)``, positive for ``classes_[1]``."""
        raw = self._outputs(X)
        if raw.shape[1] == 2:
            return raw[:, 1] - raw[:, 0]
        return raw

    def predict(self, X):
        return self._decode(self._outputs(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = self.task == "regression"
        return tags

    def score(self, X, y, sample_weight=None):
        if self.task == "classification":
            return ClassifierMixin.score(self, X, y, sample_weight)
        return RegressorMixin.score(self, X, y, sample_weight)


def _fixed_task_init(self, kernel="laplace", bandwidth=10.0, reg=1e-3, iters=3, agop_power=0.5,
                     normalize="max", centered=False, diag=False, batch_size=1024,
                     solver="auto", centers=None, agop_samples=None, tol=1e-6, cg_max_iter=1000,
                     precond_rank=500, devices=None, seed=0):
    """Set every hyperparameter but ``task`` (the subclasses fix it as a class attribute)."""
    self.kernel = kernel
    self.bandwidth = bandwidth
    self.reg = reg
    self.iters = iters
    self.agop_power = agop_power
    self.normalize = normalize
    self.centered = centered
    self.diag = diag
    self.batch_size = batch_size
    self.solver = solver
    self.centers = centers
    self.agop_samples = agop_samples
    self.tol = tol
    self.cg_max_iter = cg_max_iter
    self.precond_rank = precond_rank
    self.devices = devices
    self.seed = seed


class RFMClassifier(ClassifierMixin, RFM):
    """``RFM`` with ``task="classification"`` fixed (scikit-learn classifier tags)."""

    task = "classification"
    __init__ = _fixed_task_init


class RFMRegressor(RegressorMixin, RFM):
    """``RFM`` with ``task="regression"`` fixed (scikit-learn regressor tags)."""

    task = "regression"
    __init__ = _fixed_task_init
