"""The AGOP: closed form against autodiff, options, sampled and adaptive rows, matrix powers, NNX modules."""


import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import adaptive_problem, agop_data, assert_adaptive_rule_replayed, rel64
from tolerances import AUTODIFF, BATCHED, F32, F64, ROUNDING

from dnc_jax import (
    Kernel,
    agop,
    data_mesh,
    fit,
    fit_kernel_predictor,
    fit_kernel_ridge,
    kernel_agop,
    matrix_power,
)
from dnc_jax.rfm import fit_with_agop
from dnc_jax.sharding import as_rows


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", ["laplace", "gaussian"])
@pytest.mark.parametrize("with_metric", [False, True])
@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("diag", [False, True])
def test_kernel_agop_equals_autodiff(rng, kernel, with_metric, dtype, centered, diag):
    with jax.enable_x64(dtype == np.float64):
        X, Y, M = agop_data(rng, dtype)
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
        assert _rel(closed, auto) <= AUTODIFF[np.dtype(dtype)]


def test_kernel_agop_options(rng, x64):
    X, Y, M = agop_data(rng, np.float64)
    pred = fit_kernel_predictor(X, Y, bandwidth=2.0, reg=1e-3, M=M)
    full = kernel_agop(pred, X)
    np.testing.assert_allclose(kernel_agop(pred, X, diag=True), np.diag(full), rtol=ROUNDING[F64])
    np.testing.assert_allclose(
        kernel_agop(pred, X, normalize="max"), full / np.abs(full).max(), rtol=ROUNDING[F64]
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
        agop(lambda x: jnp.asarray(B) @ x, X[:, :3], centered=True), 0.0, atol=ROUNDING[F64]
    )


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 4, 7, 30, None])
def test_agop_does_not_depend_on_batch_size(rng, batch_size):
    X, Y, _ = agop_data(rng, np.float32, n=30)
    pred = fit_kernel_predictor(X, Y, kernel="gaussian", bandwidth=3.0, reg=1e-2)
    ref = kernel_agop(pred, X)
    assert _rel(kernel_agop(pred, X, batch_size=batch_size), ref) <= 1e-6
    assert _rel(agop(pred.predict_one, X, batch_size=batch_size), ref) <= BATCHED[F32]


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


def test_negative_matrix_power_is_the_pseudo_inverse_power(rng, x64):
    A = rng.standard_normal((6, 4))
    M = A @ A.T  # rank 4
    inv_root = np.asarray(matrix_power(M, -0.5))
    root = np.asarray(matrix_power(M, 0.5))
    P = M @ np.linalg.pinv(M)  # projector onto the range
    np.testing.assert_allclose(inv_root @ root, P, atol=1e-10)
    np.testing.assert_allclose(np.asarray(matrix_power(M, -1.0)), np.linalg.pinv(M), atol=1e-8)


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
                               rtol=ROUNDING[F64])
    np.testing.assert_allclose(agop(f, X, jnp.asarray(A), normalize="trace"), G / np.trace(G),
                               rtol=ROUNDING[F64])
    np.testing.assert_allclose(agop(f, X, jnp.asarray(A), normalize="trace", diag=True),
                               np.diag(G) / np.trace(G), rtol=ROUNDING[F64])
    np.testing.assert_allclose(agop(f, X, jnp.asarray(A), normalize="none"), G, rtol=ROUNDING[F64])
    np.testing.assert_allclose(agop(f, X[:1], jnp.asarray(A)), G, rtol=ROUNDING[F64])
    np.testing.assert_allclose(agop(f, X, jnp.asarray(A), batch_size=1), G, rtol=ROUNDING[F64])
    with pytest.raises(ValueError, match="batch_size"):
        agop(f, X, jnp.asarray(A), batch_size=0)
    for normalize in ("max", "trace"):
        zero = agop(lambda x: jnp.zeros(3) * jnp.sum(x), X, normalize=normalize)
        np.testing.assert_array_equal(zero, 0.0)


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


# matrix_power eagerly (numpy float64) and traced (the same formula in JAX, M and s traced)
POWERS = {"eager": matrix_power, "jit": jax.jit(matrix_power)}


@pytest.mark.parametrize("path", POWERS)
def test_matrix_power_rejects_what_is_not_a_finite_square_matrix(path):
    for bad in (np.ones((2, 3)), np.ones(4), np.ones((2, 2, 2))):
        with pytest.raises(ValueError, match="square"):
            POWERS[path](bad, 0.5)
    if path == "eager":  # values are not known while tracing
        with pytest.raises(ValueError, match="NaN"):
            matrix_power(np.full((2, 2), np.nan), 0.5)


@pytest.mark.parametrize("path", POWERS)
def test_matrix_power_keeps_tiny_eigenvalues_except_for_negative_powers(x64, path):
    """Only a negative power drops eigenvalues within round-off of 0 (``<= d eps
    lambda_max``, relative to the largest however small it is); positive and zero powers
    keep them. Eager and traced alike (``eigh`` of a diagonal matrix is exact)."""
    matrix_power = POWERS[path]
    tiny = np.diag([1.0, 1e-17])
    np.testing.assert_allclose(np.asarray(matrix_power(tiny, 1.0)), tiny, rtol=ROUNDING[F64], atol=0)
    np.testing.assert_allclose(np.asarray(matrix_power(tiny, 0.5)), np.diag([1.0, np.sqrt(1e-17)]),
                               rtol=ROUNDING[F64], atol=0)
    np.testing.assert_array_equal(np.asarray(matrix_power(tiny, 0.0)), np.eye(2))
    singular = np.diag([2.0, 0.0])  # M^0 is the projector on its range: 0^0 counts as 0
    np.testing.assert_array_equal(np.asarray(matrix_power(singular, 0.0)), np.diag([1.0, 0.0]))
    np.testing.assert_array_equal(np.asarray(matrix_power(tiny, -1.0)), np.diag([1.0, 0.0]))
    small = np.diag([1e-3, 1e-17])  # 1e-17 > 2 eps 1e-3: a real eigenvalue at this scale
    np.testing.assert_allclose(np.asarray(matrix_power(small, -1.0)), np.diag([1e3, 1e17]),
                               rtol=ROUNDING[F64])


@pytest.mark.parametrize("path", POWERS)
@pytest.mark.parametrize("s", [1.0, 0.5, 0.0, -0.5, -1.0])
def test_matrix_power_clips_clearly_negative_eigenvalues(rng, x64, s, path):
    """Eigenvalues 3, 1, 0.25, -0.5, -2 (DESIGN.md: negative ones clipped to 0): ``M^s``
    is ``V diag(max(l, 0)^s) V^T`` with the clipped ones 0 for every power, the zero power
    the projector onto the positive eigenspace; float64 against numpy, eager and traced."""
    matrix_power = POWERS[path]
    evals = np.array([3.0, 1.0, 0.25, -0.5, -2.0])
    V = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    M = (V * evals) @ V.T
    powered = np.where(evals > 0, np.abs(evals) ** s, 0.0)
    expected = (V * powered) @ V.T
    np.testing.assert_allclose(np.asarray(matrix_power(M, s)), expected, rtol=0, atol=ROUNDING[F64])


# ------------------------------------------------------------- adaptive AGOP sample


@pytest.mark.slow
def test_adaptive_agop_is_seeded_and_equals_the_fixed_sample_of_its_rows(rng):
    """Doubling rounds from 250 rows: the same seed gives the same rows and the same AGOP
    (bit for bit); the result equals the fixed-sample AGOP of the rows it used (the first
    m of the seed's row order) up to float32 summation order; a larger tolerance stops no
    later."""
    from dnc_jax.gradient_outer_product import adaptive_kernel_agop

    pred, X = adaptive_problem(rng)
    A, used = adaptive_kernel_agop(pred, X, tol=0.05, first=250, seed=3)
    A2, used2 = adaptive_kernel_agop(pred, X, tol=0.05, first=250, seed=3)
    assert used == used2 and used in (500, 1000, 2000) and np.array_equal(A, A2)
    fixed = kernel_agop(pred, X, samples=used, seed=3)
    np.testing.assert_allclose(A, fixed, rtol=0, atol=1e-5 * float(jnp.abs(fixed).max()))
    _, looser = adaptive_kernel_agop(pred, X, tol=0.5, first=250, seed=3)
    assert looser <= used


@pytest.mark.slow
def test_adaptive_agop_with_zero_tolerance_uses_every_row(rng):
    from dnc_jax.gradient_outer_product import adaptive_kernel_agop

    pred, X = adaptive_problem(rng, n=1100)
    A, used = adaptive_kernel_agop(pred, X, tol=0.0, first=200, seed=0)
    assert used == 1100  # 200, 400, 800, 1100
    full = kernel_agop(pred, X)
    np.testing.assert_allclose(A, full, rtol=0, atol=1e-5 * float(jnp.abs(full).max()))


@pytest.mark.slow
@pytest.mark.parametrize("power", [1.0, 0.5])
def test_adaptive_agop_stops_at_the_first_round_whose_distances_settled(rng, power):
    """The rule, replayed from fixed samples: rounds of 200, 400, 800, 1,600, 3,000 rows;
    the returned count is the first ``m`` whose AGOP moved the squared distances of the
    documented pairs (the first 2 x 500 rows of the seed's order) by at most ``tol`` from
    the AGOP of ``m / 2`` rows. Tolerances 1% above and below each round's change must
    stop exactly at that round and at a later one (float32 AGOPs accumulated in another order move the
    changes by ~1e-5 relative, far less than the gap kept around ``tol``)."""
    from dnc_jax.gradient_outer_product import (
        AUTO_PAIRS,
        distance_change,
        row_order,
    )

    pred, X = adaptive_problem(rng)
    order = row_order(3000, 5)
    pairs = np.asarray(X[order[:AUTO_PAIRS]] - X[order[AUTO_PAIRS:2 * AUTO_PAIRS]], np.float64)
    counts = [200, 400, 800, 1600, 3000]
    fixed = [np.asarray(kernel_agop(pred, X, samples=m, seed=5), np.float64) for m in counts]
    changes = [distance_change(a, b, pairs, power) for a, b in zip(fixed, fixed[1:], strict=False)]
    # just above and just below each round's change: the rule stops there, or later
    assert_adaptive_rule_replayed(pred, X, counts, changes, power)


def test_adaptive_agop_checks_its_arguments_before_any_work(rng):
    """Bad ``tol`` / ``first`` / ``power`` are refused up front; the smallest good ones
    (``first = 1``, any ``power > 0``, ``tol = 0``) run."""
    from dnc_jax.gradient_outer_product import adaptive_kernel_agop

    pred, X = adaptive_problem(rng, n=4, d=3)
    for tol in (-0.1, np.nan, np.inf):
        with pytest.raises(ValueError, match="tol"):
            adaptive_kernel_agop(pred, X, tol=tol)
    for first in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="first"):
            adaptive_kernel_agop(pred, X, first=first)
    for power in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="power"):
            adaptive_kernel_agop(pred, X, power=power)
    A, used = adaptive_kernel_agop(pred, X, tol=0.0, first=1, power=1e-3)
    assert used == 4  # 1, 2, 4
    np.testing.assert_allclose(A, kernel_agop(pred, X), rtol=0,
                               atol=ROUNDING[F32] * float(jnp.abs(A).max()))


@pytest.mark.slow
@pytest.mark.parametrize("scale", [1.0, 0.01])
def test_adaptive_agop_on_fewer_rows_than_its_pairs_replays_the_rule(rng, scale):
    """With ``n = 301 < 2 P`` rows the pairs are the first ``2 (n // 2) = 300`` rows of the
    seed's order; rounds of 20, 40, 80, 160, 301 rows; the rule replayed from fixed
    samples as in the test above (power 1 and seed 0, the defaults). The distances do not
    depend on the data's scale (``A / tr A``; the bandwidth scales with the data): at
    ``scale = 0.01`` they are ~1e-4, far below 1, and the rule stops at the same rounds."""
    from dnc_jax.gradient_outer_product import adaptive_kernel_agop, distance_change, row_order

    n = 301
    X = jnp.asarray(scale * rng.standard_normal((n, 4)), jnp.float32)
    Y = jnp.tanh(X[:, :2] @ jnp.asarray(rng.standard_normal((2, 2)) / scale, jnp.float32))
    pred = fit(Kernel("laplace", 2.0 * scale), X[:150], Y[:150], 1e-2)
    order = row_order(n, 0)
    pairs = np.asarray(X[order[:150]] - X[order[150:300]], np.float64)
    counts = [20, 40, 80, 160, 301]
    fixed = [np.asarray(kernel_agop(pred, X, samples=m, seed=0), np.float64) for m in counts]
    changes = [distance_change(a, b, pairs) for a, b in zip(fixed, fixed[1:], strict=False)]
    for c in changes[:3]:
        for tol in (1.01 * c, 0.99 * c):
            assert all(abs(other - tol) > 1e-3 * tol for other in changes)  # a real gap
            expected = next((counts[k + 1] for k, ck in enumerate(changes) if ck <= tol), n)
            _, used = adaptive_kernel_agop(pred, X, tol=tol, first=20)
            assert used == expected


@pytest.mark.slow
def test_adaptive_agop_of_a_zero_predictor_stops_when_nothing_moves(rng):
    """A predictor fitted to zero targets has AGOP 0 at every round: its distances are 0
    (not 0/0) and do not move, so even ``tol = 0`` stops at the second round."""
    from dnc_jax.gradient_outer_product import adaptive_kernel_agop

    X = jnp.asarray(rng.standard_normal((40, 3)), jnp.float32)
    pred = fit(Kernel("laplace", 2.0), X[:30], jnp.zeros((30, 2), jnp.float32), 1e-2)
    A, used = adaptive_kernel_agop(pred, X, tol=0.0, first=10)
    assert used == 20
    np.testing.assert_array_equal(A, 0.0)


def test_pair_distances_use_the_trace_normalised_agop_and_power_one_by_default(rng):
    """``delta^T (A / tr A) delta`` with the default power 1 for an AGOP of trace below 1
    (``1e-3 B B^T``), full and diagonal; a zero AGOP gives distances 0; no pairs, change 0."""
    from dnc_jax.gradient_outer_product import distance_change, pair_distances

    d = 4
    B = rng.standard_normal((d, d))
    A = 1e-3 * B @ B.T
    pairs = rng.standard_normal((6, d))
    want = np.einsum("pi,ij,pj->p", pairs, A / np.trace(A), pairs)
    np.testing.assert_allclose(pair_distances(A, pairs), want, rtol=ROUNDING[F64])
    a = np.diag(A)
    np.testing.assert_allclose(pair_distances(a, pairs), (pairs**2) @ (a / a.sum()),
                               rtol=ROUNDING[F64])
    for zero in (np.zeros((d, d)), np.zeros(d)):
        np.testing.assert_array_equal(pair_distances(zero, pairs), 0.0)
        assert distance_change(zero, zero, pairs) == 0.0
    assert distance_change(A, 2 * A + B @ B.T, np.zeros((0, d))) == 0.0


def test_distance_change_is_scale_free_and_equals_the_direct_formula(rng):
    from dnc_jax.gradient_outer_product import distance_change

    d = 5
    B = rng.standard_normal((d, d))
    A, A2 = B @ B.T, (B + 0.1 * rng.standard_normal((d, d))) @ (B + 0.1 * rng.standard_normal((d, d))).T
    A2 = (A2 + A2.T) / 2
    pairs = rng.standard_normal((7, d))
    assert distance_change(A, 3.0 * A, pairs) == pytest.approx(0.0, abs=1e-12)
    r_old = np.einsum("pi,ij,pj->p", pairs, A / np.trace(A), pairs)
    r_new = np.einsum("pi,ij,pj->p", pairs, A2 / np.trace(A2), pairs)
    want = np.sqrt(np.mean((r_new - r_old) ** 2) / np.mean(r_new ** 2))
    assert distance_change(A, A2, pairs) == pytest.approx(want, rel=1e-12)
    # diagonal AGOPs: the metric is the diagonal
    a, a2 = np.diag(A), np.diag(A2)
    r_old = (pairs ** 2) @ (a / a.sum()) ** 0.5
    r_new = (pairs ** 2) @ (a2 / a2.sum()) ** 0.5
    want = np.sqrt(np.mean((r_new - r_old) ** 2) / np.mean(r_new ** 2))
    assert distance_change(a, a2, pairs, 0.5) == pytest.approx(want, rel=1e-12)


class _TwoLayer(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(5, 16, rngs=rngs)
        self.out = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


def _jacobian_agop(model, X):
    """Plain ``vmap(jacrev)`` of the module as it is now: ``mean J^T J``."""
    J = jax.vmap(jax.jacrev(model))(X)
    return jnp.einsum("ncd,nce->de", J, J) / X.shape[0]


@pytest.mark.slow
def test_agop_of_an_nnx_module_follows_its_training(key):
    """After each of 3 optimiser steps the AGOP is that of the current weights, eagerly and
    under ``nnx.jit`` (a module cached by identity would keep its first weights)."""
    k_x, k_y = jax.random.split(key)
    X = jax.random.normal(k_x, (32, 5))
    Y = jax.random.normal(k_y, (32, 3))
    model = _TwoLayer(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        grads = nnx.grad(lambda m: jnp.mean((jax.vmap(m)(X) - Y) ** 2))(model)
        optimizer.update(model, grads)

    @nnx.jit
    def jitted(model, X):
        return agop(model, X)

    traces = []
    for _ in range(3):
        step(model, optimizer)
        ref = _jacobian_agop(model, X)
        for got in (agop(model, X), jitted(model, X)):
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6 * float(jnp.abs(ref).max()))
        traces.append(float(jnp.trace(ref)))
    assert len(set(traces)) == 3  # the weights did move


def test_agop_under_jit_equals_eager(rng):
    X = jnp.asarray(rng.standard_normal((20, 4)), jnp.float32)
    B = jnp.asarray(rng.standard_normal((3, 4)), jnp.float32)

    def f(x, B):
        return jnp.tanh(B @ x)

    eager = agop(f, X, B, batch_size=8, centered=True)
    jitted = jax.jit(lambda X, B: agop(f, X, B, batch_size=8, centered=True))(X, B)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-7)


def test_matrix_power_under_jit_equals_eager(rng, x64):
    A = rng.standard_normal((5, 5))
    M = jnp.asarray(A @ A.T)
    for s in (0.5, -0.5, 1.0):
        np.testing.assert_allclose(jax.jit(matrix_power, static_argnums=1)(M, s),
                                   matrix_power(M, s), rtol=1e-9, atol=ROUNDING[F64])


def test_sampled_agop(digits_rows):
    X, _, Y = digits_rows
    fit, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3)
    full = kernel_agop(fit, X)
    np.testing.assert_array_equal(kernel_agop(fit, X, samples=len(X)), full)
    half = kernel_agop(fit, X, samples=200, seed=3)
    assert 0 < rel64(half, full) < 0.3  # an estimate: close, not equal
    np.testing.assert_array_equal(half, kernel_agop(fit, X, samples=200, seed=3))
    np.testing.assert_array_equal(kernel_agop(fit, X, samples=200),  # the default seed is 0
                                  kernel_agop(fit, X, samples=200, seed=0))
    _, A_all, _ = fit_with_agop(X, Y, bandwidth=2.0, reg=1e-3, agop_samples=len(X))
    assert rel64(A_all, full) <= 1e-5


def test_sampled_agop_of_sharded_rows_takes_the_same_rows(digits_rows):
    """The sampled AGOP of ``Rows`` on 4 devices (a path only sharded input reaches) draws
    the same rows as on one device: equal to float32 summation order (1e-5), and another
    seed's sample is farther away than that."""

    X, _, Y = digits_rows
    fit, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3)
    rows = as_rows(X, data_mesh("all"))
    one = kernel_agop(fit, X, samples=200, seed=3)
    assert rel64(kernel_agop(fit, rows, samples=200, seed=3), one) <= 1e-5
    assert rel64(kernel_agop(fit, rows, samples=200, seed=4), one) > 1e-3


def test_sharded_diagonal_agop_with_and_without_a_metric(digits_rows, rng):
    X, _, Y = digits_rows
    B = rng.standard_normal((X.shape[1], X.shape[1]))
    M = (B @ B.T / X.shape[1] + 0.5 * np.eye(X.shape[1])).astype(np.float32)  # not diagonal
    mesh = data_mesh("all")
    for metric in (None, M):
        fit, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, M=metric)
        one = kernel_agop(fit, X, diag=True)
        four = kernel_agop(fit, X, diag=True, mesh=mesh)
        assert one.shape == four.shape == (X.shape[1],) and rel64(four, one) <= 1e-5


@pytest.mark.slow
def test_per_class_agops_are_uncentred_by_default_and_check_the_feature_count(rng):
    """With no options the per-class AGOPs sum to ``kernel_agop``'s (uncentred) AGOP; rows
    with another feature count are refused."""
    from dnc_jax.gradient_outer_product import per_class_kernel_agop

    X = jnp.asarray(rng.standard_normal((20, 3)), jnp.float32)
    predictor = fit(Kernel("laplace", 2.0), X, jnp.tanh(X[:, :2] + 1.0), 1e-2)
    whole = kernel_agop(predictor, X)
    np.testing.assert_allclose(per_class_kernel_agop(predictor, X).sum(axis=0), whole, rtol=0,
                               atol=ROUNDING[F32] * float(jnp.abs(whole).max()))
    with pytest.raises(ValueError, match="features"):
        per_class_kernel_agop(predictor, X[:, :2])


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["laplace", "gaussian", "relu_ntk"])
@pytest.mark.parametrize("centered", [False, True])
def test_per_class_agops_sum_to_the_agop_and_equal_autodiff(x64, rng, kernel, centered):
    """Each output's AGOP equals autodiff's ``(1/m) sum_i (g_ic - gbar_c)(g_ic - gbar_c)^T``
    (closed form for the radial kernels, in a metric far from I; autodiff for the NTK), and
    they sum to ``kernel_agop``'s; padded batches and ``jit`` change nothing."""
    from dnc_jax.gradient_outer_product import per_class_kernel_agop

    X = rng.standard_normal((30, 5))
    Y = rng.standard_normal((30, 3))
    A = rng.standard_normal((5, 5))
    M = None if kernel == "relu_ntk" else A @ A.T / 5 + 0.5 * np.eye(5)
    predictor = fit_kernel_predictor(X, Y, kernel=kernel, bandwidth=2.0, reg=1e-2, M=M)
    Xe = rng.standard_normal((11, 5))
    per = per_class_kernel_agop(predictor, Xe, batch_size=4, centered=centered)
    J = np.asarray(jax.vmap(jax.jacrev(predictor.predict_one))(jnp.asarray(Xe)))  # (m, C, d)
    if centered:
        J = J - J.mean(axis=0)
    ref = np.einsum("mcd,mce->cde", J, J) / len(Xe)
    # float64 sums of 11 rows: rounding ~1e-15 relative to the largest entry
    np.testing.assert_allclose(per, ref, rtol=1e-9, atol=ROUNDING[F64] * np.abs(ref).max())
    whole = kernel_agop(predictor, Xe, centered=centered)
    np.testing.assert_allclose(np.sum(per, axis=0), whole, rtol=1e-9,
                               atol=ROUNDING[F64] * np.abs(whole).max())
    jitted = jax.jit(lambda Z: per_class_kernel_agop(predictor, Z, batch_size=4,
                                                     centered=centered))(jnp.asarray(Xe))
    np.testing.assert_allclose(jitted, per, rtol=ROUNDING[F64], atol=1e-14 * np.abs(ref).max())


class _ImageCNN(nnx.Module):
    """A CNN on one ``(8, 8, 1)`` image (or a batch of them): conv, ReLU, dense head."""

    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), strides=2, rngs=rngs)
        self.head = nnx.Linear(4 * 4 * 4, 3, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.conv(x))
        return self.head(h.reshape(*h.shape[:-3], -1))


def test_agop_of_a_cnn_on_images_is_that_of_its_flattened_function(rng):
    """``agop(cnn, X)`` with ``X`` of shape ``(n, 8, 8, 1)``: the ``(64, 64)`` AGOP with
    respect to the flattened image, equal to ``vmap(jacrev)`` of the flattened function
    (float64 sums, here), eagerly and under ``jit``; an output of any shape counts as its
    entries, and a closure over the module reads its current weights."""
    cnn = _ImageCNN(nnx.Rngs(0))
    X = rng.standard_normal((20, 8, 8, 1)).astype(np.float32)

    def flat(x):
        return cnn(x.reshape(8, 8, 1))

    J = np.asarray(jax.vmap(jax.jacrev(flat))(jnp.asarray(X.reshape(20, 64))), np.float64)
    want = np.einsum("ncd,nce->de", J, J) / 20
    tol = dict(rtol=1e-5, atol=1e-6 * np.abs(want).max())
    np.testing.assert_allclose(agop(cnn, X), want, **tol)
    np.testing.assert_allclose(jax.jit(lambda X: agop(lambda x: cnn(x), X))(X), want, **tol)
    np.testing.assert_allclose(agop(lambda x: cnn(x).reshape(3, 1), X), want, **tol)
    with pytest.raises(ValueError, match=r"\(m, d\) rows or \(m, \*shape\) examples"):
        agop(cnn, X[0, 0, 0])
