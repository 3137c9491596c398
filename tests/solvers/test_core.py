"""The traceable fit under jit, vmap and grad; one compilation per sweep."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import radial_problem

from dnc_jax import Kernel, agop, fit, fit_kernel_predictor, kernel_agop


@pytest.mark.slow
@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-6), (np.float64, 1e-12)])
def test_jit_of_fit_predict_and_agops_equals_eager(rng, dtype, tol):
    with jax.enable_x64(dtype == np.float64):
        X, Y, M = radial_problem(rng, dtype)
        kernel = Kernel("laplace", 2.0, M)

        def run(X, Y, kernel):
            pred = fit(kernel, X, Y, 0.1)
            return pred.coefs, pred.predict(X[:7] * 0.9), kernel_agop(pred, X), \
                agop(pred.predict_one, X[:9])

        eager, jitted = run(X, Y, kernel), jax.jit(run)(X, Y, kernel)
        for a, b in zip(eager, jitted, strict=True):
            scale = float(jnp.abs(a).max())
            np.testing.assert_allclose(b, a, rtol=0, atol=tol * 10 * scale)


@pytest.mark.slow
def test_vmap_over_eight_bandwidths_equals_a_loop(rng):
    X, Y, _ = radial_problem(rng, np.float32)
    bandwidths = jnp.linspace(0.5, 4.0, 8)

    def fitted(L):
        pred = fit(Kernel("gaussian", L), X, Y, 1e-2)
        return pred.predict(X[:5] + 0.1), kernel_agop(pred, X)

    batched = jax.vmap(fitted)(bandwidths)
    for i, L in enumerate(bandwidths):
        single = fitted(L)
        for a, b in zip(batched, single, strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6 * float(jnp.abs(b).max()))


@pytest.mark.slow
@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_grad_of_validation_error_equals_finite_differences(rng, x64, solver):
    """d/d log L, d/d log reg and d/dM of a validation MSE (float64, central differences)."""
    X, Y, M = radial_problem(rng, np.float64, n=30)
    Xv, Yv = X[:8] * 0.7 + 0.2, Y[:8]

    def loss(log_L, log_reg, M):
        pred = fit(Kernel("laplace", jnp.exp(log_L), M), X, Y, jnp.exp(log_reg), solver=solver,
                   tol=1e-13)
        return jnp.mean((pred.predict(Xv) - Yv) ** 2)

    args = (jnp.log(2.0), jnp.log(1e-2), M)
    grads = jax.grad(loss, argnums=(0, 1, 2))(*args)
    h = 1e-5
    for i in (0, 1):
        plus, minus = list(args), list(args)
        plus[i], minus[i] = args[i] + h, args[i] - h
        fd = (loss(*plus) - loss(*minus)) / (2 * h)
        assert abs(float(grads[i]) - float(fd)) <= 1e-6 * abs(float(fd)) + 1e-12
    E = jnp.zeros_like(M).at[0, 1].set(1.0).at[1, 0].set(1.0)  # a symmetric direction
    fd = (loss(args[0], args[1], M + h * E) - loss(args[0], args[1], M - h * E)) / (2 * h)
    directional = float(jnp.sum(grads[2] * E))
    assert abs(directional - float(fd)) <= 1e-6 * abs(float(fd)) + 1e-12


def test_a_bandwidth_sweep_compiles_each_program_once(rng):
    """Five bandwidths: fit, predict and the kernel AGOP each compile once (the bandwidth
    is data)."""
    from dnc_jax.gradient_outer_product import _kernel_agop
    from dnc_jax.predictor import _predict

    X, Y, _ = radial_problem(rng, np.float32, n=33)
    fit_jit = jax.jit(fit, static_argnames=("solver", "tol", "max_iter"))
    sizes = []
    for L in (0.5, 1.0, 2.0, 3.0, 5.0):
        pred = fit_jit(Kernel("laplace", L), X, Y, 1e-2)
        pred.predict(X[:11])
        kernel_agop(pred, X, batch_size=16)
        sizes.append((fit_jit._cache_size(), _predict._cache_size(), _kernel_agop._cache_size()))
    assert sizes[-1] == sizes[0]
    # the shell's Cholesky fit compiles its kernel matrix once too
    from dnc_jax.solvers.cholesky import train_kernel_matrix

    before = None
    for L in (0.5, 1.0, 2.0):
        fit_kernel_predictor(X, Y, bandwidth=L, reg=1e-2)
        before = before or train_kernel_matrix._cache_size()
    assert train_kernel_matrix._cache_size() == before
