"""Kernel ridge regression as a shell call: ``fit_kernel_ridge`` checks its inputs once,
chooses the solver (``solvers.choice``), runs Cholesky, CG or Nyström, and says how it
solved (``SolveInfo``); ``SolverOptions`` carries the options whole."""

from __future__ import annotations

import dataclasses
import inspect
import time
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.typing import ArrayLike

from dnc_jax import _checks
from dnc_jax.kernels import Family, Kernel
from dnc_jax.option_fields import option
from dnc_jax.predictor import KernelPredictor
from dnc_jax.rows import REPLICATED, Rows, num_shards
from dnc_jax.sharding import as_rows, check_mesh, replicate
from dnc_jax.solvers import cg, core, nystrom
from dnc_jax.solvers.choice import SOLVERS, check_cholesky, choose_solver, default_memory_budget
from dnc_jax.solvers.cholesky import solve_kernel_system, train_kernel_matrix

DEFAULT_RANK = 500
DEFAULT_BLOCK = 2048


@dataclasses.dataclass(frozen=True)
class SolverOptions:
    """How RFM and Deep RFM solve each kernel fit (the arguments of ``fit_kernel_ridge``
    of the same names). ``centers`` is a count here (JSON-able run configurations).

    Each option is declared here once, with its help: the run configurations that solve
    kernel fits (``DeepRFMConfig``, ``MultiIndexConfig``) are ``SolverOptions`` with more
    fields, so an option added here is a flag of their commands and a key of their
    ``results.json``; the estimators take it as a parameter of the same name
    (``tests/test_estimators.py`` checks that each does)."""

    solver: str = option("auto", "kernel solve (fit_kernel_ridge): auto is Cholesky on one "
                                 "device while it fits the memory (on a CPU up to n=20,000), "
                                 "else CG; nystrom with centers", choices=SOLVERS)
    centers: int | None = option(None, "Nyström centres (implies solver nystrom under auto)")
    tol: float = option(core.DEFAULT_TOL, "CG relative residual")
    max_iter: int = option(core.DEFAULT_MAX_ITER, "CG iteration cap")
    precond_rank: int = option(DEFAULT_RANK, "landmarks of the CG preconditioner")
    memory_budget: int | None = option(None, "bytes of kernel rows each device may hold "
                                             "between CG iterations (default: from free memory)",
                                       recorded=False)

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def of(cls, source: Any, **renamed: str) -> SolverOptions:
        """The options a flat configuration or estimator holds: each field read from the
        attribute of ``source`` with its name (or the one ``renamed`` gives, e.g.
        ``max_iter="cg_max_iter"``), the default here where ``source`` has none."""
        values = {}
        for field in dataclasses.fields(cls):
            attribute = renamed.get(field.name, field.name)
            if hasattr(source, attribute):
                values[field.name] = getattr(source, attribute)
        return cls(**values)

    def validate(self) -> None:
        """Raise ``ValueError`` for an invalid option (run when the options are built)."""
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}; got {self.solver!r}.")
        if self.centers is not None and (isinstance(self.centers, bool) or int(self.centers) < 1):
            raise ValueError(f"centers must be a positive int or None; got {self.centers!r}.")
        if self.solver == "nystrom" and self.centers is None:
            raise ValueError("solver='nystrom' needs centers (the number of Nyström centres).")
        check_solver_options(self.tol, self.max_iter, self.precond_rank)


class SolveInfo(NamedTuple):
    """How a kernel fit was solved: the solver, its iterations and final relative residual
    (``0`` and ``None`` for Cholesky), the preconditioner rank or number of centres, and
    seconds building the preconditioner (``kernel``) and solving (``solve``); with the
    fit's AGOP (``fit_with_agop``), ``agop_rows``: the training rows it was taken from."""

    solver: str
    iterations: int
    residual: float | None
    rank: int | None
    kernel_seconds: float
    solve_seconds: float
    agop_rows: int | None = None

    def to_dict(self) -> dict:
        return self._asdict()


def validate_fit_inputs(X: ArrayLike | Rows, Y: ArrayLike | Rows, kernel: Kernel,
                        reg: ArrayLike):
    """Checks shared by every fit: returns ``(X, Y)`` as float JAX arrays, ``Y`` 2-D, or a
    ``ValueError`` (a bad kernel leaf, a negative ridge, rows that differ, a NaN)."""
    if not isinstance(kernel, Kernel):
        raise TypeError("validate_fit_inputs(X, Y, kernel, reg): kernel is a Kernel value, e.g. "
                        "Kernel('laplace', 2.0); the (X, Y, kernel, bandwidth, reg) order is gone.")
    kernel.check()
    _checks.check_nonnegative("reg", reg)
    if isinstance(X, Rows):
        X_arr = X.data
    else:
        X_arr = X = _checks.as_float_matrix("X", X)
    Y_arr = Y.data if isinstance(Y, Rows) else (Y if isinstance(Y, jax.Array) else np.asarray(Y))
    if Y_arr.ndim == 1:
        Y_arr = Y_arr[:, None]
    Y_arr = _checks.as_float_matrix("Y", Y_arr, dtype=X_arr.dtype)
    if isinstance(X, Rows):
        if not isinstance(Y, Rows) or Y.n != X.n:
            raise ValueError("With X given as Rows, Y must be Rows of the same rows.")
        Y = Rows(Y_arr, X.n)
    else:
        Y = Y_arr
    _checks.check_same_rows("X", X, "Y", Y)
    _checks.check_finite("X", X_arr)
    _checks.check_finite("Y", Y_arr)
    return X, Y


def check_solver_options(tol: float, max_iter: int, rank: int) -> None:
    """``ValueError`` unless ``0 < tol < 1``, ``max_iter >= 1`` and ``rank >= 1``."""
    if not (np.isfinite(tol) and 0 < tol < 1):
        raise ValueError(f"tol must lie in (0, 1); got {tol!r}.")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be >= 1; got {max_iter!r}.")
    if int(rank) < 1:
        raise ValueError(f"precond_rank must be >= 1; got {rank!r}.")


def choose_centers(X: Rows, centers, seed: int) -> jax.Array:
    """``(m, d)`` replicated centres: ``centers`` rows drawn uniformly without replacement
    (seeded) from ``X``'s rows, or the given array."""
    mesh = X.mesh
    if isinstance(centers, int | np.integer) and not isinstance(centers, bool):
        m = int(centers)
        if not 1 <= m <= X.n:
            raise ValueError(f"centers must lie in 1..n = {X.n}; got {m}.")
        idx = np.sort(np.random.default_rng(seed).choice(X.n, m, replace=False))
        return jax.device_put(X.data[idx], jax.sharding.NamedSharding(mesh, REPLICATED))
    try:
        Z = _checks.as_float_matrix("centers", centers, dtype=X.dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"centers must be a positive int or an (m, d) array; {err}") from None
    if Z.shape[1] != X.shape[1]:
        raise ValueError(f"centers has {Z.shape[1]} features but X has {X.shape[1]}.")
    _checks.check_finite("centers", Z)
    return replicate(Z, mesh)


def fit_kernel_ridge(
    X: ArrayLike | Rows,
    Y: ArrayLike | Rows,
    *,
    kernel: str | Family = "laplace",
    bandwidth: float = 1.0,
    reg: float = 1e-3,
    M: ArrayLike | None = None,
    block_size: int | None = None,
    solver: str = "auto",
    centers: int | ArrayLike | None = None,
    tol: float = core.DEFAULT_TOL,
    max_iter: int = core.DEFAULT_MAX_ITER,
    precond_rank: int = DEFAULT_RANK,
    memory_budget: int | None = None,
    mesh: Mesh | None = None,
    seed: int = 0,
    init: jax.Array | None = None,
) -> tuple[KernelPredictor, SolveInfo]:
    """Fit kernel ridge regression and say how it was solved.

    A shell function (memory check, solver choice, retries, timing): call it eagerly; under
    a transformation use ``fit`` or ``fit_kernel_predictor``.

    Args:
      X: ``(n, d)`` training inputs (or ``Rows`` already on ``mesh``).
      Y: ``(n, C)`` targets (or ``(n,)``, treated as ``C = 1``).
      kernel: the kernel ``k`` (a name or a family).
      bandwidth: ``L > 0``.
      reg: the ridge, ``>= 0``.
      M: the metric (``(d, d)``) or ``None``.
      block_size: rows of kernel matrices built at a time.
      solver: ``"auto"``, ``"cholesky"``, ``"cg"`` or ``"nystrom"`` (module docstring).
      centers: Nyström centres: an int ``m`` (sampled with ``seed``) or an ``(m, d)`` array.
      tol: CG stops at this relative residual.
      max_iter: or after this many iterations, with a ``RuntimeWarning``.
      precond_rank: landmarks of the CG preconditioner.
      memory_budget: bytes of kernel rows each device may hold between CG iterations
        (default ``default_memory_budget()``); beyond it they are recomputed per product.
      mesh: a mesh with a ``"data"`` axis (``dnc_jax.sharding.data_mesh``); the rows are
        sharded over it. ``None``: one device.
      seed: seeds the landmarks and the sampled centres.
      init: CG's starting coefficients (a warm start), ``(n, C)``, or the ``coefs`` of an
        exact predictor on these rows and mesh (padded on a mesh); the other solvers
        ignore it.

    Returns:
      ``(KernelPredictor, SolveInfo)``. An exact solve on a mesh returns a predictor whose
      centres stay sharded on it (``KernelPredictor.mesh``).
    """
    if mesh is not None or isinstance(X, Rows):
        mesh = check_mesh(X.mesh if isinstance(X, Rows) and mesh is None else mesh)
    X, Y = validate_fit_inputs(X, Y, Kernel(kernel, bandwidth), reg)
    n, d = X.shape
    if M is not None:
        M = jnp.asarray(M, dtype=X.dtype)
        if M.shape != (d, d):
            raise ValueError(f"M must be ({d}, {d}); got {M.shape}.")
        _checks.check_finite("M", M)
    value = Kernel(kernel, bandwidth if _checks.is_traced(bandwidth) else float(bandwidth), M)
    method = choose_solver(solver, n, mesh, centers, itemsize=X.dtype.itemsize)
    check_solver_options(tol, max_iter, precond_rank)
    return solve_checked(X, Y, kernel=value, reg=reg,
                         block_size=block_size, method=method, centers=centers, tol=tol,
                         max_iter=max_iter, precond_rank=precond_rank,
                         memory_budget=memory_budget, mesh=mesh, seed=seed, init=init)


def solve_checked(X: jax.Array | Rows, Y: jax.Array | Rows, *, kernel: Kernel, reg: float,
                  block_size: int | None,
                  method: str, centers: int | ArrayLike | None, tol: float, max_iter: int,
                  precond_rank: int, memory_budget: int | None, mesh: Mesh | None,
                  seed: int, init: jax.Array | None = None) -> tuple[KernelPredictor, SolveInfo]:
    """``fit_kernel_ridge`` on inputs already checked (``validate_fit_inputs``,
    ``check_solver_options``) with the solver chosen (``method``: ``"cholesky"``,
    ``"cg"``, or ``"nystrom"`` with ``centers``): shells that check once and then fit
    (``fit_with_agop``) call it. ``init``: CG's starting coefficients, the ``coefs`` of an
    exact predictor on the same rows and mesh (a warm start; the other solvers ignore it)."""
    n = X.shape[0]
    reg = float(reg)
    if method == "cholesky":
        if mesh is not None and num_shards(mesh) > 1:
            raise ValueError("solver='cholesky' factors the whole n x n matrix on one device; "
                             "with a mesh of several devices use solver='cg' or 'nystrom'.")
        check_cholesky(n, X.dtype.itemsize)
        Xa = X.valid() if isinstance(X, Rows) else X
        Ya = Y.valid() if isinstance(Y, Rows) else Y
        tic = time.perf_counter()
        K = train_kernel_matrix(Xa, kernel, block_size).block_until_ready()
        kernel_seconds = time.perf_counter() - tic
        coefs = solve_kernel_system(K, Xa, Ya, reg, kernel=kernel,
                                    block_size=block_size).block_until_ready()
        info = SolveInfo("cholesky", 0, None, None, kernel_seconds,
                         time.perf_counter() - tic - kernel_seconds)
        return KernelPredictor(kernel, Xa, coefs), info

    mesh = check_mesh(mesh)
    X_rows, Y_rows = as_rows(X, mesh), as_rows(Y, mesh)
    if kernel.M is not None:
        kernel = dataclasses.replace(kernel, M=replicate(kernel.M, mesh))
    budget = default_memory_budget() if memory_budget is None else int(memory_budget)
    block = DEFAULT_BLOCK if block_size is None else int(block_size)
    tic = time.perf_counter()
    if method == "cg":
        rows = X_rows.layout.rows_per_shard
        hold = rows * X_rows.layout.n_padded * X.dtype.itemsize <= budget
        result, kernel_seconds = cg.solve(
            X_rows, Y_rows, kernel=kernel, reg=reg, tol=tol, max_iter=int(max_iter),
            rank=int(precond_rank), hold=hold, block_size=block, seed=seed,
            init=None if init is None else _start(init, Y_rows, mesh))
        # on one device there is no padding and nothing to shard: a plain predictor
        sharded = num_shards(mesh) > 1
        predictor = KernelPredictor(kernel, X_rows.data, result.solution.data,
                                    mesh if sharded else None)
        rank = min(int(precond_rank), n)
    else:
        Z = choose_centers(X_rows, centers, seed)
        hold = X_rows.layout.rows_per_shard * Z.shape[0] * X.dtype.itemsize <= budget
        result, kernel_seconds = nystrom.solve(
            X_rows, Y_rows, Z, kernel=kernel, reg=reg, tol=tol, max_iter=int(max_iter),
            hold=hold, block_size=block)
        predictor = KernelPredictor(kernel, Z, result.solution)
        rank = int(Z.shape[0])
    iters, res = int(result.iterations), float(result.residual)
    info = SolveInfo(method, iters, res, rank, kernel_seconds,
                     time.perf_counter() - tic - kernel_seconds)
    if not bool(result.converged):
        warnings.warn(
            f"{method} stopped unconverged after {iters} iterations (max_iter={max_iter}), "
            f"relative residual {res:.3g} > tol={tol:g}; raise max_iter or precond_rank, or "
            "loosen tol.", RuntimeWarning, stacklevel=3)
    return predictor, info


def _start(init: ArrayLike, Y: Rows, mesh: Mesh) -> jax.Array:
    """CG's starting point laid out like ``Y.data``: ``init`` as given when it is already
    (``(n_pad, C)``), else an ``(n, C)`` array placed as rows; a ``ValueError`` otherwise."""
    shape = tuple(np.shape(init))
    if shape == Y.data.shape:  # placed as Y is: the cold solve's program serves it
        return jax.device_put(jnp.asarray(init, Y.dtype), Y.data.sharding)
    if shape != (Y.n, Y.data.shape[1]):
        raise ValueError(f"init must be ({Y.n}, {Y.data.shape[1]}) like the targets (or a "
                         f"predictor's padded coefs {Y.data.shape}); got {shape}.")
    return as_rows(np.asarray(init), mesh, dtype=Y.dtype).data


# fit_kernel_predictor's traced path takes the shell's defaults, declared once above
FIT_DEFAULTS = {name: p.default for name, p in inspect.signature(fit_kernel_ridge).parameters.items()
                if p.default is not inspect.Parameter.empty}


def fit_kernel_predictor(X: ArrayLike | Rows, Y: ArrayLike | Rows, **options) -> KernelPredictor:
    """Fit kernel ridge regression ``alpha = (K(X, X) + reg I)^(-1) Y``; the options are
    those of ``fit_kernel_ridge`` (by default: Laplace, ``L = 1``, ``reg = 1e-3``, the
    solver chosen by size). Returns the ``KernelPredictor``.

    Under ``jax.jit``, ``vmap`` or ``grad`` (any of ``X``, ``Y``, ``bandwidth``, ``reg``,
    ``M`` traced) it is the traceable ``fit`` (``solvers.core``): Cholesky (``solver``
    ``"auto"`` or ``"cholesky"``), CG (``"cg"``) or Nyström (``"nystrom"`` with an
    ``(m, d)`` array of ``centers``), one device, no memory check or retry.
    """
    traced = _checks.is_traced(X, Y, *(options.get(k) for k in ("bandwidth", "reg", "M")))
    if not traced:
        return fit_kernel_ridge(X, Y, **options)[0]
    unsupported = set(options) - {"kernel", "bandwidth", "reg", "M", "solver", "tol", "max_iter",
                                  "centers"}
    solver = options.get("solver", FIT_DEFAULTS["solver"])
    centers = options.get("centers")
    if centers is not None and solver == "auto":  # as the shell: centres mean Nyström
        solver = "nystrom"
    if (unsupported or solver not in SOLVERS or isinstance(X, Rows)
            or (centers is not None and jnp.ndim(centers) != 2)
            or (solver == "nystrom") != (centers is not None)):
        raise ValueError("Under jax.jit/vmap/grad, fit_kernel_predictor takes kernel, "
                         "bandwidth, reg, M, solver ('auto', 'cholesky', 'cg', or 'nystrom' "
                         "with an (m, d) array of centers), tol and max_iter on one device; "
                         f"got {sorted(options)} (solver {solver!r}).")
    given = {k: options.get(k, FIT_DEFAULTS[k]) for k in ("kernel", "bandwidth", "reg", "M", "tol")}
    kernel = Kernel(given["kernel"], given["bandwidth"], given["M"])
    assert not isinstance(Y, Rows)  # Rows are refused above (with X)
    return core.fit(kernel, X, Y, given["reg"], solver="cholesky" if solver == "auto" else solver,
                    tol=given["tol"], max_iter=options.get("max_iter"), centers=centers)
