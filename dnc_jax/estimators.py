"""Recursive Feature Machines as scikit-learn estimators: ``RFM`` and its classifier and
regressor forms, around the RFM loop of ``dnc_jax.rfm.fit_rfm``."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from dnc_jax.gradient_outer_product import AGOP_BATCH
from dnc_jax.labels import one_hot_pm1
from dnc_jax.rfm import fit_rfm
from dnc_jax.sharding import data_mesh
from dnc_jax.solvers import SolverOptions

# The solver options' defaults, declared once in SolverOptions: scikit-learn's flat
# __init__ lists each option (its rules), with the default read from here.
SOLVER = SolverOptions()


class RFM(BaseEstimator):
    """Recursive Feature Machine (Radhakrishnan et al., Science 2024), scikit-learn API.

    Parameters:
      kernel: ``"laplace"`` or ``"gaussian"``.
      bandwidth: kernel bandwidth ``L``.
      reg: ridge.
      iters: number of AGOP updates before the final fit.
      agop_power: ``p``; the kernel sees ``x AGOP^p`` (xRFM's naming; 0.5 = metric AGOP).
      normalize: AGOP normalisation before the power: ``"max"``, ``"trace"`` or ``None``.
      centered: centre the AGOP's Jacobians (see ``agop``).
      diag: keep only the AGOP's diagonal (see ``agop``).
      task: ``"classification"`` (``{-1, +1}`` one-hot targets, argmax prediction) or
        ``"regression"``.
      batch_size: training rows whose Jacobians are held at once.
      solver: how each kernel fit is solved (``fit_kernel_ridge``).
      centers: an int makes every fit a Nyström machine of that many centres.
      tol: CG's relative residual.
      cg_max_iter: CG's iteration cap (``fit_kernel_ridge``'s ``max_iter``).
      precond_rank: landmarks of the CG preconditioner.
      agop_samples: AGOP from this many seeded training rows (``None``: all; ``"auto"``:
        as many as it needs, recorded per iteration in ``history_``).
      devices: ``None`` (one device), ``"all"`` or a count: rows sharded over a data mesh.
      seed: seeds sampled rows, centres and landmarks.
      memory_budget: bytes of kernel rows each device may hold between CG iterations
        (``fit_kernel_ridge``; default from the free memory).

    Computes in ``X``'s float dtype: float64 input stays float64 when JAX's 64-bit mode is
    on; with it off, float64 becomes float32 with one ``Float64Warning``.

    Fitted attributes: ``transform_`` (``T``, ``(d, d)``), ``agop_`` (the last AGOP),
    ``predictor_`` (``KernelPredictor`` on ``X T``), ``history_`` (one ``RFMIteration`` per fit),
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
        batch_size: int | None = AGOP_BATCH,
        solver: str = SOLVER.solver,
        centers: int | None = SOLVER.centers,
        agop_samples: int | str | None = None,
        tol: float = SOLVER.tol,
        cg_max_iter: int = SOLVER.max_iter,
        precond_rank: int = SOLVER.precond_rank,
        devices: str | int | None = None,
        seed: int = 0,
        memory_budget: int | None = SOLVER.memory_budget,
    ):
        _fixed_task_init(self, kernel, bandwidth, reg, iters, agop_power, normalize, centered,
                         diag, batch_size, solver, centers, agop_samples, tol, cg_max_iter,
                         precond_rank, devices, seed, memory_budget)
        self.task = task

    # -------------------------------------------------------------- helpers

    def _targets(self, y):
        if self.task == "classification":
            self._encoder = LabelEncoder().fit(y)
            self.classes_ = self._encoder.classes_
            return one_hot_pm1(self._encoder.transform(y), len(self.classes_))
        y = np.asarray(y, dtype=np.float64)
        self._single_output = y.ndim == 1
        return y[:, None] if y.ndim == 1 else y

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
        # x T is taken inside each fixed-size block: a row's output is batch-invariant
        return np.asarray(predictor.predict(X, transform=transform), dtype=np.float64)

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
        options = SolverOptions.of(self, max_iter="cg_max_iter")
        mesh = None if self.devices is None else data_mesh(self.devices)
        score = None
        if X_val is not None and y_val is not None:
            X_val = validate_data(self, X_val, reset=False)

            def score(transform, predictor):
                return self._score_raw(self._raw_predict(X_val, transform, predictor), y_val)

        # X's dtype is kept: float64 with JAX's 64-bit mode on (else one Float64Warning)
        fit = fit_rfm(X, Y, kernel=self.kernel,
                      bandwidth=self.bandwidth, reg=self.reg, iters=self.iters,
                      agop_power=self.agop_power, normalize=self.normalize,
                      centered=self.centered, diag=self.diag, batch_size=self.batch_size,
                      solver=options, agop_samples=self.agop_samples, seed=self.seed,
                      mesh=mesh, score=score)
        self.history_, self.best_iter_ = fit.history, fit.best_iter
        self.transform_, self.predictor_ = fit.transform, fit.predictor
        if fit.agop is not None:
            self.agop_ = fit.agop
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
                     normalize="max", centered=False, diag=False, batch_size=AGOP_BATCH,
                     solver=SOLVER.solver, centers=SOLVER.centers, agop_samples=None,
                     tol=SOLVER.tol, cg_max_iter=SOLVER.max_iter,
                     precond_rank=SOLVER.precond_rank, devices=None, seed=0,
                     memory_budget=SOLVER.memory_budget):
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
    self.memory_budget = memory_budget


class RFMClassifier(ClassifierMixin, RFM):
    """``RFM`` with ``task="classification"`` fixed (scikit-learn classifier tags)."""

    task = "classification"
    __init__ = _fixed_task_init


class RFMRegressor(RegressorMixin, RFM):
    """``RFM`` with ``task="regression"`` fixed (scikit-learn regressor tags)."""

    task = "regression"
    __init__ = _fixed_task_init
