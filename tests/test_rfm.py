"""The RFM step (rfm_step, fit_with_agop) and the RFM loop (fit_rfm), eager and traced."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import radial_problem, rel64
from tolerances import F64, ROUNDING

from dnc_jax import (
    Kernel,
    deep_rfm,
    fit_kernel_predictor,
    kernel_agop,
    matrix_power,
)
from dnc_jax.rfm import fit_rfm, fit_with_agop, rfm_step
from dnc_jax.solvers import SolverOptions


@pytest.mark.slow
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


def test_rfm_step_is_the_step_of_every_loop(rng, x64):
    """The pure step equals the shell's step (``fit_with_agop``, which fit_rfm, Deep RFM,
    grokking and multi-index call) in float64: the same formulas, rounding apart."""
    X, Y, M = radial_problem(rng, np.float64)
    T = matrix_power(M, 0.5)
    for kernel, centered in (("laplace", False), ("gaussian", True)):
        pred, A = rfm_step(Kernel(kernel, 2.0), X, Y, 1e-2, T, centered=centered,
                           normalize="max")
        shell, A_shell, _ = fit_with_agop(X @ T, Y, kernel=kernel, bandwidth=2.0, reg=1e-2,
                                          transform=T, centered=centered, normalize="max",
                                          solver=SolverOptions("cholesky"))
        np.testing.assert_allclose(pred.coefs, shell.coefs, rtol=0,
                                   atol=1e-10 * float(jnp.abs(shell.coefs).max()))
        np.testing.assert_allclose(A, A_shell, rtol=0, atol=ROUNDING[F64])
        jitted = jax.jit(lambda X, Y, T, k=kernel, c=centered: rfm_step(
            Kernel(k, 2.0), X, Y, 1e-2, T, centered=c, normalize="max")[1])(X, Y, T)
        np.testing.assert_allclose(jitted, A, rtol=0, atol=ROUNDING[F64])


@pytest.mark.slow
def test_fit_rfm_under_jit_vmap_and_grad(rng, x64):
    """The whole loop traced: jit equals the eager loop; vmap over bandwidths equals a
    Python loop; the gradient of a validation MSE with respect to log L equals central
    differences (float64; the eigendecompositions are differentiated by JAX's eigh rule)."""
    X, Y, _ = radial_problem(rng, np.float64, n=30)
    Xv, Yv = X[:8] * 0.7 + 0.2, Y[:8]
    options = dict(kernel="gaussian", reg=1e-2, iters=2, agop_power=0.5)
    eager = fit_rfm(X, Y, bandwidth=2.0, **options)
    jitted = jax.jit(lambda X, Y, L: fit_rfm(X, Y, bandwidth=L, **options))(X, Y, 2.0)
    np.testing.assert_allclose(jitted.transform, eager.transform, rtol=0, atol=1e-10)
    np.testing.assert_allclose(jitted.predictor.coefs, eager.predictor.coefs, rtol=0,
                               atol=1e-8 * float(jnp.abs(eager.predictor.coefs).max()))

    def loss(log_L):
        fitted = fit_rfm(X, Y, bandwidth=jnp.exp(log_L), **options)
        return jnp.mean((fitted.predictor.predict(Xv, transform=fitted.transform) - Yv) ** 2)

    bandwidths = jnp.log(jnp.array([1.5, 2.0, 3.0]))
    np.testing.assert_allclose(jax.vmap(loss)(bandwidths),
                               jnp.stack([loss(b) for b in bandwidths]), rtol=1e-10)
    h = 1e-5
    fd = (loss(jnp.log(2.0) + h) - loss(jnp.log(2.0) - h)) / (2 * h)
    assert abs(float(jax.grad(loss)(jnp.log(2.0))) - float(fd)) <= 1e-6 * abs(float(fd))


def test_rfm_step_refuses_bad_input(rng):
    X, Y, M = radial_problem(rng, np.float32)
    with pytest.raises(ValueError, match="Y must be"):
        rfm_step(Kernel("laplace", 2.0), X, Y[:5])
    with pytest.raises(ValueError, match="normalize must be"):
        rfm_step(Kernel("laplace", 2.0), X, Y, normalize="l2")
    with pytest.raises(ValueError, match="without M"):
        rfm_step(Kernel("laplace", 2.0, M), X, Y)
    with pytest.raises(ValueError, match="Kernel value"):
        rfm_step("laplace", X, Y)


def test_fit_rfm_under_jit_refuses_what_only_the_shell_does(rng):
    X, Y, _ = radial_problem(rng, np.float32)
    with pytest.raises(ValueError, match="one device"):
        jax.jit(lambda X: fit_rfm(X, Y, agop_samples=10).transform)(X)
    with pytest.raises(ValueError, match="solves by"):
        jax.jit(lambda X: fit_rfm(X, Y, solver=SolverOptions("nystrom", 10)).transform)(X)


def test_fit_with_agop_equals_kernel_agop(rng):
    X = rng.standard_normal((50, 8)).astype(np.float32)
    Y = rng.standard_normal((50, 3)).astype(np.float32)
    A = rng.standard_normal((8, 8))
    T = (A @ A.T / 8).astype(np.float32)
    Z = X @ T
    pred, agop_x, _ = fit_with_agop(Z, Y, bandwidth=3.0, reg=1e-3, transform=T, batch_size=16)
    # the same predictor seen on x has metric T^2; its closed form must agree
    on_x = fit_kernel_predictor(X, Y, bandwidth=3.0, reg=1e-3, M=T @ T)
    ref = kernel_agop(on_x, X)
    # measured 3.9e-7 and 2.0e-6 (float32)
    assert float(jnp.linalg.norm(agop_x - ref) / jnp.linalg.norm(ref)) < 1e-5
    np.testing.assert_allclose(pred.predict(Z), on_x.predict(X), rtol=1e-5, atol=2e-5)


def test_defaults_are_the_papers_and_agree_across_entry_points():
    """Deep RFM's defaults are the paper's (module docstring: Laplace, L = 2, ridge 1e-3,
    ReLU of uniform weights, width 512, depth 10), and ``deep_rfm``, ``DeepRFMConfig``,
    ``SolverOptions`` and ``fit_kernel_ridge`` default the options they share alike
    (``deep_rfm`` takes a ``DeepRFMConfig`` and field overrides, no copy of the fields)."""
    import dataclasses
    import inspect

    from dnc_jax.deep_rfm_model import DeepRFMConfig
    from dnc_jax.solvers import SolverOptions, fit_kernel_ridge

    c = DeepRFMConfig()
    assert (c.depth, c.width, c.kernel, c.bandwidth, c.reg) == (10, 512, "laplace", 2.0, 1e-3)
    assert (c.features, c.weights, c.gamma, c.seed, c.dtype) == ("relu", "uniform", 1.0, 0, "float32")
    assert (c.solver, c.centers, c.agop_samples, c.refit_accuracy) == ("auto", None, None, False)
    # deep_rfm declares none of the fields again: it takes the config, fields override it
    fields = {f.name for f in dataclasses.fields(DeepRFMConfig)}
    assert not fields & set(inspect.signature(deep_rfm).parameters)
    X = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)
    y = np.arange(40) % 3
    by_keyword = deep_rfm(X, y, depth=1, width=8, seed=3)
    by_config = deep_rfm(X, y, config=DeepRFMConfig(depth=1, width=8, seed=3))
    assert [r.output for r in by_keyword] == [r.output for r in by_config]
    with pytest.raises(TypeError, match="widht"):
        deep_rfm(X, y, widht=8)
    solver = {f.name: f.default for f in dataclasses.fields(SolverOptions)}
    fit = inspect.signature(fit_kernel_ridge).parameters
    assert {k: fit[k].default for k in solver} == solver
    # fit_kernel_predictor's documented defaults: Laplace, L = 1, reg = 1e-3
    assert {k: fit[k].default for k in ("kernel", "bandwidth", "reg", "seed", "M", "mesh")} == {
        "kernel": "laplace", "bandwidth": 1.0, "reg": 1e-3, "seed": 0, "M": None, "mesh": None}
    assert c.solver_options() == SolverOptions(c.solver, c.centers, c.tol, c.max_iter,
                                               c.precond_rank)
    assert (c.tol, c.max_iter, c.precond_rank) == (solver["tol"], solver["max_iter"],
                                                   solver["precond_rank"])
    # the adaptive AGOP sample's documented defaults (its docstring, README's API table,
    # the CLI help of --agop-samples): 1% change of the distances, from 1,000 rows, 500 pairs
    from dnc_jax.gradient_outer_product import (
        AUTO_FIRST_ROWS,
        AUTO_PAIRS,
        AUTO_TOL,
        adaptive_kernel_agop,
    )

    assert (AUTO_TOL, AUTO_FIRST_ROWS, AUTO_PAIRS) == (1e-2, 1000, 500)
    # the traced fit_kernel_predictor takes the shell's defaults: the same fit under jit
    # (float64 Cholesky both ways, K + 1e-3 I of 40 rows: condition <= 4e4, error ~1e-11)
    with jax.enable_x64(True):
        X64, Y64 = X.astype(np.float64), np.eye(3)[y]
        eager = fit_kernel_predictor(X64, Y64).predict(X64[:5] * 0.9)
        traced = jax.jit(lambda X, Y: fit_kernel_predictor(X, Y).predict(X[:5] * 0.9))(X64, Y64)
    np.testing.assert_allclose(traced, eager, rtol=0, atol=1e-9 * float(np.abs(eager).max()))
    adaptive = inspect.signature(adaptive_kernel_agop).parameters
    assert {k: adaptive[k].default for k in ("tol", "first", "power", "seed")} == {
        "tol": 1e-2, "first": 1000, "power": 1.0, "seed": 0}


@pytest.mark.slow
def test_fit_rfm_warm_start_reaches_the_cold_start_solution(rng, x64):
    """CG warm-started from the previous fit's coefficients solves the same systems. Each
    solve is within relative residual ``tol`` = 1e-12, so within ``kappa tol`` of its exact
    solution, ``kappa <= (n + reg) / reg`` ~ 3e3 (300 rows, ``K_ii = 1``, reg 0.1); that
    error moves the next metric, which moves the next solution by at most ``kappa`` times
    as much: at most ``kappa^2 tol`` per fit, three fits. The first fit has nothing to
    start from and takes the cold start's iterations."""
    X = rng.standard_normal((300, 5))
    Y = np.tanh(X[:, :2])
    options = dict(bandwidth=3.0, reg=0.1, iters=2, solver=SolverOptions("cg", tol=1e-12))
    warm = fit_rfm(X, Y, **options)
    cold = fit_rfm(X, Y, warm_start=False, **options)
    iterations = [[r.solve.iterations for r in f.history] for f in (warm, cold)]
    assert iterations[0][0] == iterations[1][0]
    Xq = rng.standard_normal((50, 5))
    kappa = (300 + 0.1) / 0.1
    assert rel64(warm.predictor.predict(Xq @ np.asarray(warm.transform)),
                 cold.predictor.predict(Xq @ np.asarray(cold.transform))) <= 3 * kappa**2 * 1e-12


def test_rfm_loop_feeds_each_update_to_the_next_step():
    """The loop's order, with stand-ins for the fit and the update: step ``k`` sees the
    transform ``update`` made of step ``k - 1``'s AGOP (the first: the one passed) and the
    previous step; each yielded step carries its own transform and the next one."""
    from dnc_jax.rfm import rfm_loop

    seen = []

    def step(T, previous):
        seen.append((T, None if previous is None else previous.step))
        return f"predictor on {T}", f"A({T})", None

    steps = list(rfm_loop(step, lambda A: f"u({A})", 3, transform="T0"))
    assert seen == [("T0", None), ("u(A(T0))", 0), ("u(A(u(A(T0))))", 1)]
    assert [(s.step, s.transform, s.agop, s.next_transform) for s in steps] == [
        (0, "T0", "A(T0)", "u(A(T0))"),
        (1, "u(A(T0))", "A(u(A(T0)))", "u(A(u(A(T0))))"),
        (2, "u(A(u(A(T0))))", "A(u(A(u(A(T0)))))", "u(A(u(A(u(A(T0))))))"),
    ]
    assert list(rfm_loop(step, lambda A: A, 0)) == []
