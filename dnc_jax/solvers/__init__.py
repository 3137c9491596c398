"""Kernel ridge regression ``(K + reg I) alpha = Y``: choosing and running a solver.

Solvers (DESIGN.md, Scale):

- ``"cholesky"`` (``solvers.cholesky``): exact, ``O(n^3)`` time and ``n x n`` memory on one
  device;
- ``"cg"`` (``solvers.cg``): the same solution by preconditioned conjugate gradients, to a
  relative residual ``tol``; matrix-vector products only, sharded over a mesh;
- ``"nystrom"`` (``solvers.nystrom``): ridge regression restricted to ``centers`` (Falkon),
  ``O(n m)`` per iteration; an estimator, not the exact fit (equal to it when ``m = n``).

``solvers.choice`` decides which one ``solver="auto"`` stands for and whether the exact
path fits the memory; ``solvers.ridge`` runs the fit (``fit_kernel_ridge``, the shell;
``solvers.core.fit``, the traceable one). This package re-exports their public names.
"""

from dnc_jax.predictor import KernelPredictor
from dnc_jax.solvers.choice import (
    ACCELERATOR_CHOLESKY_PEAK_MATRICES,
    AUTO_CHOLESKY_MAX_N,
    CHOLESKY_AGOP_PEAK_MATRICES,
    CHOLESKY_PEAK_MATRICES,
    SOLVERS,
    available_memory,
    check_cholesky,
    cholesky_fits,
    cholesky_peak_matrices,
    choose_solver,
    default_memory_budget,
)
from dnc_jax.solvers.cholesky import (
    LAPACK_CHOLESKY_MAX_N,
    solve_kernel_system,
    solve_psd,
    train_kernel_matrix,
)
from dnc_jax.solvers.core import DEFAULT_MAX_ITER, DEFAULT_TOL
from dnc_jax.solvers.ridge import (
    DEFAULT_BLOCK,
    DEFAULT_RANK,
    SolveInfo,
    SolverOptions,
    check_solver_options,
    choose_centers,
    fit_kernel_predictor,
    fit_kernel_ridge,
    validate_fit_inputs,
)

__all__ = [
    "ACCELERATOR_CHOLESKY_PEAK_MATRICES",
    "AUTO_CHOLESKY_MAX_N",
    "CHOLESKY_AGOP_PEAK_MATRICES",
    "CHOLESKY_PEAK_MATRICES",
    "DEFAULT_BLOCK",
    "DEFAULT_MAX_ITER",
    "DEFAULT_RANK",
    "DEFAULT_TOL",
    "LAPACK_CHOLESKY_MAX_N",
    "SOLVERS",
    "available_memory",
    "check_cholesky",
    "check_solver_options",
    "cholesky_fits",
    "cholesky_peak_matrices",
    "choose_centers",
    "choose_solver",
    "default_memory_budget",
    "fit_kernel_predictor",
    "fit_kernel_ridge",
    "KernelPredictor",
    "solve_kernel_system",
    "solve_psd",
    "SolveInfo",
    "SolverOptions",
    "train_kernel_matrix",
    "validate_fit_inputs",
]
