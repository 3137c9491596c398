"""Preconditioned CG against Cholesky, its preconditioner's algebra, non-convergence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import coefs_of, rel64
from tolerances import F64, ROUNDING

from dnc_jax import Kernel, fit_kernel_ridge, kernel_agop


@pytest.mark.slow
@pytest.mark.parametrize("kernel, bandwidth", [("laplace", 2.0), ("gaussian", 0.5)])
def test_cg_equals_cholesky(digits_rows, kernel, bandwidth):
    """Float32, at bandwidths where float32 Cholesky itself is accurate to ~1e-5."""
    X, _, Y = digits_rows
    exact, _ = fit_kernel_ridge(X, Y, kernel=kernel, bandwidth=bandwidth, reg=1e-2,
                                solver="cholesky")
    for budget in (None, 0):  # kernel rows held, and recomputed in every product
        fit, info = fit_kernel_ridge(X, Y, kernel=kernel, bandwidth=bandwidth, reg=1e-2, solver="cg",
                                     tol=1e-6, precond_rank=100, memory_budget=budget,
                                     block_size=128)
        assert info.solver == "cg" and info.iterations >= 1 and info.residual < 1e-4
        assert rel64(coefs_of(fit, len(X)), exact.coefs) <= 1e-4
        assert rel64(fit.predict(X[:50] * 0.9), exact.predict(X[:50] * 0.9)) <= 1e-4
        assert rel64(kernel_agop(fit, X), kernel_agop(exact, X)) <= 1e-4


@pytest.mark.slow
def test_cg_equals_cholesky_float64(digits_rows, x64):
    X, _, Y = digits_rows
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    exact, _ = fit_kernel_ridge(X64, Y64, bandwidth=2.0, reg=1e-3, solver="cholesky")
    fit, info = fit_kernel_ridge(X64, Y64, bandwidth=2.0, reg=1e-3, solver="cg", tol=1e-10,
                                 precond_rank=50)
    assert fit.coefs.dtype == jnp.float64 and info.residual < 1e-9
    assert rel64(fit.coefs, exact.coefs) <= 1e-7


def test_cg_on_the_tiled_held_kernel_equals_cholesky(rng, x64):
    """Past one tile (1,100 rows against tiles of 512: three tiles a side, the last
    overlapping) CG holds the kernel built from the upper triangle's tiles
    (``symmetric_kernel_matrix``), duplicated rows included; it reaches the Cholesky
    solution, whose kernel is built row block by row block, to CG's tolerance (relative
    error <= kappa tol, kappa <= (n + reg) / reg for unit-diagonal K)."""
    from dnc_jax.kernels.value import SYMMETRIC_TILE

    n = 1100
    assert n > 2 * SYMMETRIC_TILE
    X = rng.standard_normal((n, 8))
    X[n - 1] = X[3]
    Y = np.eye(3)[rng.integers(0, 3, n)]
    exact, _ = fit_kernel_ridge(X, Y, bandwidth=4.0, reg=1e-1, solver="cholesky")
    fit, info = fit_kernel_ridge(X, Y, bandwidth=4.0, reg=1e-1, solver="cg", tol=1e-12,
                                 precond_rank=200)
    assert info.residual < 1e-11
    assert rel64(coefs_of(fit, n), exact.coefs) <= 2 * (n + 0.1) / 0.1 * 1e-12


def test_unconverged_cg_warns(digits_rows):
    X, _, Y = digits_rows
    with pytest.warns(RuntimeWarning, match="unconverged after 2 iterations") as caught:
        _, info = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-4, solver="cg", max_iter=2,
                                   precond_rank=2)
    assert info.iterations == 2
    assert caught[0].filename == __file__  # the warning points at the caller's line


@pytest.mark.slow
def test_full_rank_preconditioners_are_exact(digits_rows, x64):
    """With every point as a landmark (CG) or centre (Nyström), the preconditioner equals
    the system's matrix (``F F^T = K``; Falkon's ``(n/m) K_mm^2 + reg K_mm = K^2 + reg K``),
    so PCG converges in a couple of iterations; a rank-2 preconditioner needs many."""
    X, _, Y = (a.astype(np.float64) for a in digits_rows)
    counts = {}
    for rank in (len(X), 2):
        _, info = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, solver="cg", tol=1e-8,
                                   precond_rank=rank)
        counts[rank] = info.iterations
    _, nystrom_info = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, centers=len(X), tol=1e-8)
    assert counts[len(X)] <= 3 and nystrom_info.iterations <= 3 and counts[2] >= 20


@pytest.mark.slow
@pytest.mark.parametrize("solver", ["cg", "nystrom"])
def test_pcg_columns_are_independent_and_scale_free(digits_rows, x64, solver):
    """Each right-hand side runs its own PCG: a zero column gives zero coefficients and
    does not stop the others; a column scaled by 2^-13 gives coefficients scaled alike (the
    residual is relative); the column that converges first stops moving, so it equals its
    own solve; one iteration moves the iterate (the residual leaves 1).

    A column's own solve is run beside a zero column: a single column takes the
    matrix-vector products, whose different rounding CG amplifies over its iterations (on
    an Intel Xeon, column 1 alone needed 26 iterations and ended 1.2e-6 away from the
    same column solved beside others, which stopped at 25)."""
    X, _, Y = (a.astype(np.float64) for a in digits_rows)
    options = dict(bandwidth=2.0, reg=1e-3, solver=solver, tol=1e-6, precond_rank=50,
                   centers=100 if solver == "nystrom" else None)
    zero = np.zeros((len(X), 1))
    alone = [fit_kernel_ridge(X, np.concatenate([Y[:, c:c + 1], zero], axis=1), **options)
             for c in (0, 1)]
    assert alone[0][1].iterations != alone[1][1].iterations  # one converges first
    Y4 = np.concatenate([Y[:, :2], np.zeros((len(X), 1)), 2.0**-13 * Y[:, :1]], axis=1)
    fit, info = fit_kernel_ridge(X, Y4, **options)
    coefs = np.asarray(fit.coefs)
    assert info.iterations == max(a[1].iterations for a in alone)
    np.testing.assert_array_equal(coefs[:, 2], 0.0)
    for c in (0, 1):
        # (rounding of products with 4 columns instead of 1, times Nyström's conditioning)
        assert rel64(coefs[:, c], np.asarray(alone[c][0].coefs)[:, 0]) <= 1e-7
    np.testing.assert_array_equal(coefs[:, 3], 2.0**-13 * coefs[:, 0])
    tiny, _ = fit_kernel_ridge(X, 2.0**-20 * Y4, **options)  # ||b||^2 far below tol
    np.testing.assert_array_equal(np.asarray(tiny.coefs), 2.0**-20 * coefs)
    with pytest.warns(RuntimeWarning, match="unconverged after 1 iterations"):
        _, one = fit_kernel_ridge(X, Y, **{**options, "max_iter": 1})
    assert one.iterations == 1 and abs(one.residual - 1.0) > 1e-3  # the iterate moved


def test_preconditioner_algebra_against_its_formulas(rng):
    """The host-side float64 pieces of both preconditioners against their formulas:
    ``A^(-1/2)`` and Frangella-Tropp-Udell's ``P^-1`` (eq. 5.3) with eigenvalues below
    ``1e-7 * max`` dropped (inputs given slightly asymmetric: only the symmetric part
    counts; one kept eigenvalue lies below 1e-7 itself), Falkon's factors
    ``L R R^T L^T = (n/m) K^2 + reg K``, and the Cholesky jitter ladder."""
    from dnc_jax.solvers.cg import inverse_sqrt_psd, nystrom_correction
    from dnc_jax.solvers.nystrom import cholesky_with_jitter, falkon_factors

    def orthogonal(n, k):
        return np.linalg.qr(rng.standard_normal((n, k)))[0]

    def antisymmetric(n):
        E = rng.standard_normal((n, n))
        return 0.1 * (E - E.T)

    V = orthogonal(5, 5)
    lam = np.array([2e-3, 5e-4, 1e-8, 1e-10, 0.0])  # 1e-10 < 1e-7 * 2e-3: dropped
    A = (V * lam) @ V.T
    kept = lam > 2e-10
    expected = (V[:, kept] / np.sqrt(lam[kept])) @ V[:, kept].T
    np.testing.assert_allclose(inverse_sqrt_psd(A + 1e-3 * antisymmetric(5)), expected,
                               rtol=1e-6, atol=1e-6 * np.abs(expected).max())
    np.testing.assert_array_equal(inverse_sqrt_psd(np.zeros((3, 3))), 0.0)

    n, reg = 30, 1e-3
    U, s = orthogonal(n, 5), np.array([3.0, 1.0, 1e-2, 7e-4, 1e-6]) * 1e-2
    F = U @ np.diag(s) @ orthogonal(5, 5).T  # F^T F: 9e-4, 1e-4, 1e-8, 4.9e-11, 1e-16
    keep = s**2 > 1e-7 * s[0] ** 2
    Uk, lk = U[:, keep], s[keep] ** 2
    P_inv = (lk.min() + reg) * (Uk / (lk + reg)) @ Uk.T + np.eye(n) - Uk @ Uk.T
    gram = F.T @ F
    Q = nystrom_correction(gram + 1e-3 * np.abs(gram).max() * antisymmetric(5), reg)
    np.testing.assert_allclose(np.eye(n) + F @ Q @ F.T, P_inv, atol=1e-9)
    np.testing.assert_array_equal(nystrom_correction(np.zeros((4, 4)), reg), 0.0)

    X = rng.standard_normal((50, 6))
    K = np.exp(-np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1)) / 2.0)
    L, R = falkon_factors(K, 400, reg)
    LR = L @ R
    np.testing.assert_allclose(LR @ LR.T, (400 / 50) * K @ K + reg * K, rtol=1e-9, atol=1e-9)

    steps = (0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3)
    L = cholesky_with_jitter(np.zeros((3, 3)))  # mean diagonal 0: jitter relative to 1
    np.testing.assert_allclose(L @ L.T, 1e-7 * np.eye(3), rtol=ROUNDING[F64])
    B = rng.standard_normal((10, 3))
    for t in range(len(steps) + 1):
        base = B @ B.T + (np.eye(10) if t == 0 else 0.0)
        s0 = np.mean(np.diag(base))
        delta = {0: 0.0, 1: 0.5 * steps[1]}.get(t, 2.0 * steps[min(t, 6) - 1]) * s0
        M = base - (delta if t < len(steps) else 0.1 * s0) * np.eye(10)
        scale = np.mean(np.diag(M))
        if t == len(steps):
            with pytest.raises(ValueError, match="not positive definite"):
                cholesky_with_jitter(M)
            continue
        L = cholesky_with_jitter(M)
        np.testing.assert_allclose(L @ L.T, M + steps[t] * scale * np.eye(10), rtol=ROUNDING[F64],
                                   atol=ROUNDING[F64] * scale)


def test_held_kernel_rows_are_one_buffer():
    """CG that holds ``K`` keeps one ``n x n`` buffer (written block by block), not a
    stacked copy beside it: XLA's temporaries stay under 1.5 kernels (blocks of 500 rows
    add at most a few ``500 x n`` products to the one kernel)."""
    from dnc_jax.sharding import data_mesh
    from dnc_jax.solvers.cg import cg_solve

    n, d, r = 4000, 16, 8
    z = jnp.zeros
    compiled = cg_solve.lower(
        Kernel("laplace", 1.0, jnp.eye(d)), z((n, d)), z((n, 2)), z((n, r)), z((r, r)),
        jnp.float32(1e-3), jnp.float32(1e-6), z((n, 2)), jnp.asarray(False),
        mesh=data_mesh(jax.devices()[:1]), n=n, hold=True, block_size=500, max_iter=10).compile()
    kernel_bytes = n * n * 4
    assert compiled.memory_analysis().temp_size_in_bytes < 1.5 * kernel_bytes


@pytest.mark.parametrize("mesh", [None, "all"])
def test_warm_start_from_the_solution_needs_no_iteration(digits_rows, x64, mesh):
    """CG started from a converged solution of the same system (its ``coefs``, padded and
    sharded on a mesh) stops at once (after at most one iteration: the start rescaled by
    ``gamma`` ~ 1 may cross the tolerance by rounding); from a
    nearby system's solution (another ridge) it reaches the same solution to its tolerance
    in fewer iterations than from zero."""
    from dnc_jax.sharding import data_mesh

    X, _, Y = (a.astype(np.float64) for a in digits_rows)
    options = dict(bandwidth=2.0, solver="cg", tol=1e-10, precond_rank=20,
                   mesh=None if mesh is None else data_mesh(mesh))
    cold, info = fit_kernel_ridge(X, Y, reg=1e-3, **options)
    warm, again = fit_kernel_ridge(X, Y, reg=1e-3, init=cold.coefs, **options)
    # each within relative residual 1e-10 of the one solution: relative error at most
    # kappa tol, kappa(K + reg I) <= (n + reg) / reg ~ 4e5 for 402 unit-norm rows (K_ii = 1)
    bound = 2 * 4e5 * 1e-10
    assert info.iterations > 0 and again.iterations <= 1
    assert rel64(coefs_of(warm, len(X)), coefs_of(cold, len(X))) <= bound  # rescaled start
    near, near_info = fit_kernel_ridge(X, Y, reg=1.1e-3, init=cold.coefs, **options)
    far, far_info = fit_kernel_ridge(X, Y, reg=1.1e-3, **options)
    assert near_info.iterations < far_info.iterations
    assert rel64(coefs_of(near, len(X)), coefs_of(far, len(X))) <= bound
    # an (n, C) start is placed as rows; any other shape is refused before any work
    _, unpadded = fit_kernel_ridge(X, Y, reg=1e-3, init=coefs_of(cold, len(X)), **options)
    assert unpadded.iterations <= 1
    with pytest.raises(ValueError, match="init must be"):
        fit_kernel_ridge(X, Y, reg=1e-3, init=np.zeros((3, 10)), **options)


def test_cold_and_warm_solves_share_one_program(digits_rows):
    """The RFM loop's first fit starts CG from zero and the later ones from the previous
    coefficients: one compiled ``cg_solve`` serves both (``warm`` is data, not a static
    argument), and the warm start is still taken (fewer iterations from the solution)."""
    from dnc_jax.solvers.cg import cg_solve

    X, _, Y = (a.astype(np.float32) for a in digits_rows)
    options = dict(bandwidth=2.0, solver="cg", tol=1e-4, precond_rank=20, reg=1e-3)
    cg_solve.clear_cache()
    cold, info = fit_kernel_ridge(X, Y, **options)
    _, again = fit_kernel_ridge(X, Y, init=cold.coefs, **options)
    assert cg_solve._cache_size() == 1
    assert again.iterations < info.iterations


def test_pcg_start_is_never_farther_than_zero(rng, x64):
    """``pcg``'s warm start is the multiple of ``x0`` nearest the solution in the A-norm:
    with no iteration its error is at most the zero start's (``||x*||_A``), even from a
    start pointing the wrong way or a tiny one (``x0^T A x0 < 1``), and its scale is
    ``x0^T b / x0^T A x0`` per column; a zero column starts at zero (not 0/0)."""
    from dnc_jax.solvers.cg import pcg

    G = rng.standard_normal((30, 30))
    A = jnp.asarray(G @ G.T + 30 * np.eye(30))
    B = jnp.asarray(rng.standard_normal((30, 3)))
    solution = np.linalg.solve(np.asarray(A), np.asarray(B))
    for X0 in (-5.0 * solution + rng.standard_normal((30, 3)), rng.standard_normal((30, 3)),
               1e-3 * rng.standard_normal((30, 3))):
        start = pcg(lambda v: A @ v, lambda v: v, B, tol=0.0, max_iter=0,
                    X0=jnp.asarray(X0)).solution
        gamma = np.sum(X0 * np.asarray(B), 0) / np.sum(X0 * (np.asarray(A) @ X0), 0)
        np.testing.assert_allclose(np.asarray(start), gamma * X0, rtol=1e-12)
        for c in range(3):
            err = np.asarray(start)[:, c] - solution[:, c]
            assert err @ np.asarray(A) @ err <= solution[:, c] @ np.asarray(A) @ solution[:, c]
    X0 = rng.standard_normal((30, 3))
    X0[:, 1] = 0.0
    start = np.asarray(pcg(lambda v: A @ v, lambda v: v, B, tol=0.0, max_iter=0,
                           X0=jnp.asarray(X0)).solution)
    assert np.isfinite(start).all()
    np.testing.assert_array_equal(start[:, 1], 0.0)
