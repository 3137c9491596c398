"""Kernels, kernel ridge solves and the two AGOP routes."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import RTOL

from dnc_jax import (
    agop,
    fit_kernel_predictor,
    gaussian_kernel,
    kernel_agop,
    laplace_kernel,
    matrix_power,
)


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def _data(rng, dtype, n=40, d=6, C=3):
    X = rng.standard_normal((n, d)).astype(dtype)
    Y = rng.standard_normal((n, C)).astype(dtype)
    A = rng.standard_normal((d, d))
    M = (A @ A.T / d).astype(dtype)
    return X, Y, M


def test_kernels_match_direct_formula(rng, x64):
    X, _, M = _data(rng, np.float64)
    Z = rng.standard_normal((7, X.shape[1]))
    diff = X[:, None, :] - Z[None, :, :]
    dist_m = np.sqrt(np.einsum("nmd,de,nme->nm", diff, M, diff))
    np.testing.assert_allclose(laplace_kernel(X, Z, 2.0, M), np.exp(-dist_m / 2.0), rtol=1e-12)
    dist = np.linalg.norm(diff, axis=-1)
    np.testing.assert_allclose(
        gaussian_kernel(X, Z, 1.5, block_size=3), np.exp(-(dist**2) / (2 * 1.5**2)), rtol=1e-12
    )
    # a point against itself is at distance exactly 0
    np.testing.assert_array_equal(np.diag(laplace_kernel(X, X, 1.0)), 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", ["laplace", "gaussian"])
@pytest.mark.parametrize("with_metric", [False, True])
@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("diag", [False, True])
def test_kernel_agop_equals_autodiff(rng, kernel, with_metric, dtype, centered, diag):
    with jax.enable_x64(dtype == np.float64):
        X, Y, M = _data(rng, dtype)
        # bandwidth 1 keeps the Gaussian solve well conditioned (at 2 its coefficients
        # reach ~1e3 and float32 predictions themselves lose ~1e-4 to cancellation)
        pred = fit_kernel_predictor(
            X, Y, kernel=kernel, bandwidth=2.0 if kernel == "laplace" else 1.0, reg=1e-3,
            M=M if with_metric else None,
        )
        # training points (zero-distance self term) and fresh points
        Xe = np.concatenate([X[:15], rng.standard_normal((10, X.shape[1])).astype(dtype)])
        closed = kernel_agop(pred, Xe, batch_size=8, centered=centered, diag=diag)
        auto = agop(pred.predict_one, Xe, centered=centered, diag=diag)
        assert closed.dtype == dtype and closed.ndim == (1 if diag else 2)
        # measured worst over all 32 cases: 4.8e-15 (float64), 3.9e-6 (float32)
        assert _rel(closed, auto) <= (1e-12 if dtype == np.float64 else 2e-5)


def test_kernel_agop_options(rng, x64):
    X, Y, M = _data(rng, np.float64)
    pred = fit_kernel_predictor(X, Y, bandwidth=2.0, reg=1e-3, M=M)
    full = kernel_agop(pred, X)
    np.testing.assert_allclose(kernel_agop(pred, X, diag=True), np.diag(full), rtol=1e-12)
    np.testing.assert_allclose(
        kernel_agop(pred, X, normalize="max"), full / np.abs(full).max(), rtol=1e-12
    )
    np.testing.assert_allclose(
        agop(pred.predict_one, X, normalize="trace", diag=True),
        np.diag(full) / np.trace(full),
        rtol=1e-10,
    )


def test_agop_of_linear_map_is_gram(rng, x64):
    A = rng.standard_normal((4, 9))
    X = rng.standard_normal((13, 9))
    out = agop(lambda x, A: A @ x, X, jnp.asarray(A), batch_size=5)
    np.testing.assert_allclose(out, A.T @ A, rtol=1e-13)
    # C > d takes the forward-mode route; same answer
    B = rng.standard_normal((12, 3))
    np.testing.assert_allclose(agop(lambda x: jnp.asarray(B) @ x, X[:, :3]), B.T @ B, rtol=1e-13)
    # centring removes the (constant) mean Jacobian entirely
    np.testing.assert_allclose(
        agop(lambda x: jnp.asarray(B) @ x, X[:, :3], centered=True), 0.0, atol=1e-12
    )


@pytest.mark.parametrize("batch_size", [1, 4, 7, 30, None])
def test_agop_does_not_depend_on_batch_size(rng, batch_size):
    X, Y, _ = _data(rng, np.float32, n=30)
    pred = fit_kernel_predictor(X, Y, kernel="gaussian", bandwidth=3.0, reg=1e-2)
    ref = kernel_agop(pred, X)
    assert _rel(kernel_agop(pred, X, batch_size=batch_size), ref) <= 1e-6
    assert _rel(agop(pred.predict_one, X, batch_size=batch_size), ref) <= RTOL[np.dtype("float32")]


def test_matrix_power(rng):
    A = rng.standard_normal((8, 5))
    M = (A @ A.T).astype(np.float32)  # PSD, rank 5
    root = matrix_power(M, 0.5)
    assert root.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(root, np.float64) @ np.asarray(root, np.float64), M,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(matrix_power(M, 1.0), M, rtol=1e-5, atol=1e-4)
    # negative eigenvalues (round-off of a PSD matrix) are clipped, never NaN
    bad = M.astype(np.float64) - 1e-9 * np.eye(8)
    assert np.isfinite(np.asarray(matrix_power(bad, 0.5))).all()


def test_interpolation_on_duplicates_never_nan(rng):
    X, Y, _ = _data(rng, np.float32, n=20)
    X = np.concatenate([X, X[:5]])
    Y = np.concatenate([Y, Y[:5]])
    with pytest.warns(RuntimeWarning, match="jitter"):
        pred = fit_kernel_predictor(X, Y, bandwidth=1.0, reg=0.0)
    assert np.isfinite(np.asarray(pred.coefs)).all()


def test_interpolation_reproduces_targets(rng, x64):
    X, Y, _ = _data(rng, np.float64, n=25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pred = fit_kernel_predictor(X, Y, kernel="laplace", bandwidth=1.0, reg=0.0)
    np.testing.assert_allclose(pred.predict(X, block_size=7), Y, atol=1e-8)
    np.testing.assert_allclose(jax.vmap(pred.predict_one)(jnp.asarray(X)), Y, atol=1e-8)


def test_bad_inputs_raise(rng):
    X, Y, _ = _data(rng, np.float32)
    with pytest.raises(ValueError, match="rows"):
        fit_kernel_predictor(X, Y[:-1], bandwidth=1.0)
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_kernel_predictor(bad, Y, bandwidth=1.0)
    with pytest.raises(ValueError, match="NaN"):
        agop(lambda x: x, bad)
    with pytest.raises(ValueError, match="bandwidth"):
        fit_kernel_predictor(X, Y, bandwidth=0.0)
    with pytest.raises(ValueError, match="reg"):
        fit_kernel_predictor(X, Y, bandwidth=1.0, reg=-1.0)
    with pytest.raises(ValueError, match="kernel"):
        fit_kernel_predictor(X, Y, kernel="cosine", bandwidth=1.0)
    with pytest.raises(ValueError, match="2-D"):
        fit_kernel_predictor(X[0], Y, bandwidth=1.0)
    pred = fit_kernel_predictor(X, Y, bandwidth=1.0)
    with pytest.raises(ValueError, match="features"):
        kernel_agop(pred, X[:, :3])
    with pytest.raises(ValueError, match="normalize"):
        kernel_agop(pred, X, normalize="sum")


def test_negative_matrix_power_is_the_pseudo_inverse_power(rng, x64):
    A = rng.standard_normal((6, 4))
    M = A @ A.T  # rank 4
    inv_root = np.asarray(matrix_power(M, -0.5))
    root = np.asarray(matrix_power(M, 0.5))
    P = M @ np.linalg.pinv(M)  # projector onto the range
    np.testing.assert_allclose(inv_root @ root, P, atol=1e-10)
    np.testing.assert_allclose(np.asarray(matrix_power(M, -1.0)), np.linalg.pinv(M), atol=1e-8)


def test_solve_psd_rebuilds_in_float64_and_solves_to_its_precision(rng):
    """A float32 kernel matrix of nearly coincident points is indefinite past a small ridge
    (its float32 factorisation fails); the float64 rebuild then gives the float64 solve."""
    from dnc_jax.solvers import solve_kernel_system, train_kernel_matrix
    from dnc_jax.solvers.cholesky import _cholesky_solve

    base = rng.standard_normal((1, 5))
    X = (base + 1e-4 * rng.standard_normal((30, 5))).astype(np.float32)
    Y = rng.standard_normal((30, 2)).astype(np.float32)
    reg = 1e-7
    K = train_kernel_matrix(jnp.asarray(X), None, "gaussian", 1.0, None)
    assert not bool(_cholesky_solve(K, jnp.asarray(Y), jnp.float32(reg))[1])  # float32 fails
    alpha = solve_kernel_system(K, jnp.asarray(X), jnp.asarray(Y), reg, kernel="gaussian",
                                bandwidth=1.0)
    assert alpha.dtype == jnp.float32
    X64 = np.asarray(X, np.float64)
    K64 = np.exp(-((X64[:, None] - X64[None]) ** 2).sum(-1) / 2) + reg * np.eye(30)
    ref = np.linalg.solve(K64, np.asarray(Y, np.float64))
    # condition ~3e8: float64 solves agree to ~1e-7, then the float32 cast
    assert np.linalg.norm(np.asarray(alpha, np.float64) - ref) / np.linalg.norm(ref) < 1e-5


def test_near_pairs_are_recomputed_by_difference_and_only_they(rng):
    """``near=k`` replaces each row's ``k`` nearest squared distances by the direct
    difference and leaves the rest to the expansion; the default is ``k = 0``; the Laplace
    kernel takes ``NEAR_PAIRS`` of them, the Gaussian none. A common offset of 30 makes the
    float32 expansion err by ~1e-3 on distances of ~1e-3, so every choice is visible."""
    from dnc_jax.kernels import NEAR_PAIRS, kernel_distances, squared_distances

    X = (30.0 + rng.standard_normal((6, 16))).astype(np.float32)
    Z = np.concatenate([X[:, :] + 1e-2 * rng.standard_normal((6, 16)), X[:3] + 1.0]).astype(np.float32)
    Z = Z[rng.permutation(len(Z))]
    exact = ((X[:, None, :].astype(np.float64) - Z[None, :, :]) ** 2).sum(-1)
    order = np.argsort(exact, axis=1)
    plain = np.asarray(squared_distances(X, Z, near=0))
    np.testing.assert_array_equal(np.asarray(squared_distances(X, Z)), plain)
    for k in (1, 3):
        out = np.asarray(squared_distances(X, Z, near=k))
        rows = np.arange(len(X))[:, None]
        near, far = order[:, :k], order[:, k:]
        np.testing.assert_allclose(out[rows, near], exact[rows, near], rtol=1e-4)
        np.testing.assert_array_equal(out[rows, far], plain[rows, far])
        assert np.abs(plain[rows, near] / exact[rows, near] - 1).max() > 1e-2  # visible
    np.testing.assert_array_equal(np.asarray(kernel_distances(X, Z, "gaussian")), plain)
    np.testing.assert_array_equal(np.asarray(kernel_distances(X, Z, "laplace")),
                                  np.asarray(squared_distances(X, Z, near=NEAR_PAIRS)))


@pytest.mark.parametrize("scale", [1e-3, 1e3])
def test_normalize_small_and_large_agops_and_leave_a_zero_one(rng, x64, scale):
    """``normalize`` divides by the largest entry or the trace whatever their size (AGOPs
    below and above 1), and an all-zero AGOP (a constant function) stays 0, never NaN; one
    evaluation point, and batches of one row, are enough."""
    A = scale * rng.standard_normal((3, 5))
    X = rng.standard_normal((7, 5))
    G = A.T @ A
    f = lambda x, A: A @ x  # noqa: E731
    np.testing.assert_allclose(agop(f, X, jnp.asarray(A), normalize="max"), G / np.abs(G).max(),
                               rtol=1e-12)
    np.testing.assert_allclose(agop(f, X, jnp.asarray(A), normalize="trace"), G / np.trace(G),
                               rtol=1e-12)
    np.testing.assert_allclose(agop(f, X, jnp.asarray(A), normalize="trace", diag=True),
                               np.diag(G) / np.trace(G), rtol=1e-12)
    np.testing.assert_allclose(agop(f, X, jnp.asarray(A), normalize="none"), G, rtol=1e-12)
    np.testing.assert_allclose(agop(f, X[:1], jnp.asarray(A)), G, rtol=1e-12)
    np.testing.assert_allclose(agop(f, X, jnp.asarray(A), batch_size=1), G, rtol=1e-12)
    with pytest.raises(ValueError, match="batch_size"):
        agop(f, X, jnp.asarray(A), batch_size=0)
    for normalize in ("max", "trace"):
        zero = agop(lambda x: jnp.zeros(3) * jnp.sum(x), X, normalize=normalize)
        np.testing.assert_array_equal(zero, 0.0)


@pytest.mark.parametrize("step", range(7))
def test_solve_psd_jitter_ladder(rng, x64, step):
    """``K - delta I`` with ``K`` PSD of rank 4 and ``reg = 0`` is indefinite by ``delta``:
    the retry adds ``eps_k * mean(diag K)`` for ``eps_k`` = 1e-7, 1e-6, ... and the first
    that exceeds ``delta`` succeeds, with a warning that names it; past 1e-2, a
    ``ValueError``. ``step`` 6 is an all-zero ``K`` (mean diagonal 0: the jitter is
    relative to 1)."""
    from dnc_jax.solvers import solve_psd

    steps = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
    B = rng.standard_normal((20, 4))
    K = B @ B.T if step < 6 else np.zeros((20, 20))
    scale = float(np.mean(np.diag(K))) or 1.0
    Y = rng.standard_normal((20, 2))
    if step < 6:  # between the previous rung and this one
        K = K - (0.5 if step == 0 else 2.0) * steps[step - 1 if step else 0] * scale * np.eye(20)
        scale = float(np.mean(np.diag(K)))  # what the jitter is relative to
    target = steps[min(step, 5)] if step < 6 else steps[0]
    with pytest.warns(RuntimeWarning, match=f"added jitter {target * scale:.3g} to"):
        alpha = solve_psd(jnp.asarray(K), jnp.asarray(Y), 0.0)
    residual = (K + target * scale * np.eye(20)) @ np.asarray(alpha) - Y
    assert np.linalg.norm(residual) <= 1e-8 * np.linalg.norm(Y)  # solved with that jitter
    if step < 6:
        worse = K - 0.1 * scale * np.eye(20)
        with pytest.raises(ValueError, match=f"jitter up to {1e-2 * np.mean(np.diag(worse)):.3g}"):
            solve_psd(jnp.asarray(worse), jnp.asarray(Y), 0.0)


def test_solve_psd_retries_a_finite_factor_with_overflowing_coefficients():
    """``diag(1, 1e-37)`` in float32 factors (finite, pivot 3e-19) but its solve overflows:
    that counts as a failure too, and the jitter retry returns finite coefficients."""
    from dnc_jax.solvers import solve_psd

    K = jnp.asarray(np.diag([1.0, 1e-37]).astype(np.float32))
    Y = jnp.asarray([[1.0], [1e3]], jnp.float32)
    with pytest.warns(RuntimeWarning, match="added jitter"):
        alpha = solve_psd(K, Y, 0.0)
    assert np.isfinite(np.asarray(alpha)).all()


def test_sample_rows():
    from dnc_jax.gradient_outer_product import sample_rows

    idx = sample_rows(100, 60, seed=3)
    assert len(np.unique(idx)) == 60 and np.all(np.diff(idx) > 0) and idx.max() < 100
    np.testing.assert_array_equal(idx, sample_rows(100, 60, seed=3))
    assert len(sample_rows(100, 1, seed=0)) == 1
    assert sample_rows(100, None, 0) is None and sample_rows(100, 100, 0) is None
    assert sample_rows(100, 500, 0) is None
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="agop_samples"):
            sample_rows(100, bad, 0)


def test_matrix_power_rejects_what_is_not_a_finite_square_matrix():
    for bad in (np.ones((2, 3)), np.ones(4), np.ones((2, 2, 2))):
        with pytest.raises(ValueError, match="square"):
            matrix_power(bad, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        matrix_power(np.full((2, 2), np.nan), 0.5)


def test_matrix_power_keeps_tiny_eigenvalues_except_for_negative_powers(x64):
    """Only a negative power drops eigenvalues within round-off of 0 (``<= d eps
    lambda_max``, relative to the largest however small it is); positive and zero powers
    keep them."""
    tiny = np.diag([1.0, 1e-17])
    np.testing.assert_allclose(np.asarray(matrix_power(tiny, 1.0)), tiny, rtol=1e-12, atol=0)
    np.testing.assert_allclose(np.asarray(matrix_power(tiny, 0.5)), np.diag([1.0, np.sqrt(1e-17)]),
                               rtol=1e-12, atol=0)
    np.testing.assert_array_equal(np.asarray(matrix_power(tiny, 0.0)), np.eye(2))
    singular = np.diag([2.0, 0.0])  # M^0 is the projector on its range: 0^0 counts as 0
    np.testing.assert_array_equal(np.asarray(matrix_power(singular, 0.0)), np.diag([1.0, 0.0]))
    np.testing.assert_array_equal(np.asarray(matrix_power(tiny, -1.0)), np.diag([1.0, 0.0]))
    small = np.diag([1e-3, 1e-17])  # 1e-17 > 2 eps 1e-3: a real eigenvalue at this scale
    np.testing.assert_allclose(np.asarray(matrix_power(small, -1.0)), np.diag([1e3, 1e17]),
                               rtol=1e-12)


@pytest.mark.parametrize("s", [1.0, 0.5, 0.0, -0.5, -1.0])
def test_matrix_power_clips_clearly_negative_eigenvalues(rng, x64, s):
    """Eigenvalues 3, 1, 0.25, -0.5, -2 (DESIGN.md: negative ones clipped to 0): ``M^s``
    is ``V diag(max(l, 0)^s) V^T`` with the clipped ones 0 for every power, the zero power
    the projector onto the positive eigenspace; float64 against numpy."""
    evals = np.array([3.0, 1.0, 0.25, -0.5, -2.0])
    V = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    M = (V * evals) @ V.T
    powered = np.where(evals > 0, np.abs(evals) ** s, 0.0)
    expected = (V * powered) @ V.T
    np.testing.assert_allclose(np.asarray(matrix_power(M, s)), expected, rtol=0, atol=1e-12)


def test_float64_rebuild_keeps_the_metric(rng):
    """The float64 fallback of an indefinite float32 kernel matrix is rebuilt in the same
    metric ``M`` (here far from the identity): equal to a float64 solve in that metric."""
    from dnc_jax.solvers import solve_kernel_system, train_kernel_matrix
    from dnc_jax.solvers.cholesky import _cholesky_solve

    base = rng.standard_normal((1, 5))
    X = (base + 1e-4 * rng.standard_normal((30, 5))).astype(np.float32)
    Y = rng.standard_normal((30, 2)).astype(np.float32)
    A = rng.standard_normal((5, 5))
    M = (A @ A.T + 0.1 * np.eye(5)).astype(np.float32)
    reg = 1e-7
    K = train_kernel_matrix(jnp.asarray(X), jnp.asarray(M), "gaussian", 1.0, None)
    assert not bool(_cholesky_solve(K, jnp.asarray(Y), jnp.float32(reg))[1])  # float32 fails
    alpha = solve_kernel_system(K, jnp.asarray(X), jnp.asarray(Y), reg, kernel="gaussian",
                                bandwidth=1.0, M=jnp.asarray(M))
    X64, M64 = np.asarray(X, np.float64), np.asarray(M, np.float64)

    def solve64(metric):
        diff = X64[:, None] - X64[None]
        K64 = np.exp(-np.einsum("ijk,kl,ijl->ij", diff, metric, diff) / 2) + reg * np.eye(30)
        return np.linalg.solve(K64, np.asarray(Y, np.float64))

    ref, no_metric = solve64(M64), solve64(np.eye(5))
    assert np.linalg.norm(no_metric - ref) > 0.1 * np.linalg.norm(ref)  # M matters here
    # as in the metric-free test: a float64 solve (condition ~1e8-1e9), then the float32 cast
    assert np.linalg.norm(np.asarray(alpha, np.float64) - ref) / np.linalg.norm(ref) < 1e-5


# ------------------------------------------------------------- adaptive AGOP sample


def _adaptive_problem(rng, n=3000, d=6):
    from dnc_jax import Kernel, fit

    X = jnp.asarray(rng.standard_normal((n, d)), jnp.float32)
    Y = jnp.tanh(X[:, :2] @ jnp.asarray(rng.standard_normal((2, 2)), jnp.float32))
    return fit(Kernel("laplace", 3.0), X[:400], Y[:400], 1e-2), X


def test_adaptive_agop_is_seeded_and_equals_the_fixed_sample_of_its_rows(rng):
    """Doubling rounds from 250 rows: the same seed gives the same rows and the same AGOP
    (bit for bit); the result equals the fixed-sample AGOP of the rows it used (the first
    m of the seed's row order) up to float32 summation order; a larger tolerance stops no
    later."""
    from dnc_jax.gradient_outer_product import adaptive_kernel_agop

    pred, X = _adaptive_problem(rng)
    A, used = adaptive_kernel_agop(pred, X, tol=0.05, first=250, seed=3)
    A2, used2 = adaptive_kernel_agop(pred, X, tol=0.05, first=250, seed=3)
    assert used == used2 and used in (500, 1000, 2000) and np.array_equal(A, A2)
    fixed = kernel_agop(pred, X, samples=used, seed=3)
    np.testing.assert_allclose(A, fixed, rtol=0, atol=1e-5 * float(jnp.abs(fixed).max()))
    _, looser = adaptive_kernel_agop(pred, X, tol=0.5, first=250, seed=3)
    assert looser <= used


def test_adaptive_agop_with_zero_tolerance_uses_every_row(rng):
    from dnc_jax.gradient_outer_product import adaptive_kernel_agop

    pred, X = _adaptive_problem(rng, n=1100)
    A, used = adaptive_kernel_agop(pred, X, tol=0.0, first=200, seed=0)
    assert used == 1100  # 200, 400, 800, 1100
    full = kernel_agop(pred, X)
    np.testing.assert_allclose(A, full, rtol=0, atol=1e-5 * float(jnp.abs(full).max()))


def test_fit_with_agop_auto_records_the_rows_it_used(rng):
    from dnc_jax import fit_with_agop
    from dnc_jax.solvers import SolverOptions

    X = rng.standard_normal((1500, 5)).astype(np.float32)
    Y = np.tanh(X[:, :2])
    _, A, info = fit_with_agop(X, Y, bandwidth=3.0, agop_samples="auto", normalize="max",
                               solver=SolverOptions("cg"))
    assert info.agop_rows in (1000, 1500) and A.shape == (5, 5)
    _, _, exact = fit_with_agop(X[:300], Y[:300], bandwidth=3.0)
    assert exact.agop_rows == 300
    with pytest.raises(ValueError, match="uncentred"):
        fit_with_agop(X, Y, agop_samples="auto", centered=True)
    with pytest.raises(ValueError, match="positive int, 'auto' or None"):
        fit_with_agop(X, Y, agop_samples="some")
