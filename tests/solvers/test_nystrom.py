"""Nyström (Falkon) against the exact fit, its preconditioner factors, the traceable fit."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import radial_problem, rel64
from tolerances import F64, ROUNDING

from dnc_jax import (
    Kernel,
    data_mesh,
    fit,
    fit_kernel_predictor,
    fit_kernel_ridge,
)


@pytest.mark.slow
def test_nystrom_fit_is_traceable_and_equals_the_shell(rng, x64):
    """The traced Nyström fit equals the shell's (Falkon PCG) on the same centres to the
    CG tolerance, its gradient with respect to log L equals central differences, and with
    every row a centre it is the exact fit."""
    from dnc_jax import fit_kernel_ridge

    X, Y, _ = radial_problem(rng, np.float64, n=60)
    Z = X[::3]
    Xv, Yv = X[:8] * 0.7 + 0.2, Y[:8]
    pred = fit(Kernel("laplace", 2.0), X, Y, 1e-2, solver="nystrom", centers=Z, tol=1e-12)
    shell, _ = fit_kernel_ridge(X, Y, kernel="laplace", bandwidth=2.0, reg=1e-2,
                                solver="nystrom", centers=Z, tol=1e-12)
    np.testing.assert_allclose(pred.predict(Xv), shell.predict(Xv), rtol=0, atol=1e-9)
    jitted = jax.jit(lambda L: fit_kernel_predictor(X, Y, kernel="laplace", bandwidth=L,
                                                    reg=1e-2, centers=Z, tol=1e-12).coefs)(2.0)
    np.testing.assert_allclose(jitted, pred.coefs, rtol=0,
                               atol=1e-9 * float(jnp.abs(pred.coefs).max()))
    exact = fit(Kernel("laplace", 2.0), X, Y, 1e-2)
    full = fit(Kernel("laplace", 2.0), X, Y, 1e-2, solver="nystrom", centers=X, tol=1e-13)
    np.testing.assert_allclose(full.predict(Xv), exact.predict(Xv), rtol=0, atol=1e-7)

    def loss(log_L):
        p = fit(Kernel("gaussian", jnp.exp(log_L)), X, Y, 1e-2, solver="nystrom", centers=Z,
                tol=1e-13)
        return jnp.mean((p.predict(Xv) - Yv) ** 2)

    h = 1e-5
    fd = (loss(jnp.log(2.0) + h) - loss(jnp.log(2.0) - h)) / (2 * h)
    assert abs(float(jax.grad(loss)(jnp.log(2.0))) - float(fd)) <= 1e-6 * abs(float(fd))
    with pytest.raises(ValueError, match="needs centers"):
        fit(Kernel("laplace", 2.0), X, Y, 1e-2, solver="nystrom")


@pytest.mark.slow
def test_traced_fit_takes_centres_as_the_shell_does(rng, x64):
    """Under ``jit`` an ``(m, d)`` array of centres means Nyström when the solver is
    ``"auto"``, as eagerly (the same fit to the CG tolerance, as above); a count of centres
    (drawn eagerly only), centres beside another solver, or Nyström without centres are
    refused, not fitted by another solver."""
    X, Y, _ = radial_problem(rng, np.float64, n=30)
    Z = X[::3]
    eager, info = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-2, centers=Z, tol=1e-12)
    assert info.solver == "nystrom"
    traced = jax.jit(lambda X: fit_kernel_predictor(X, Y, bandwidth=2.0, reg=1e-2, centers=Z,
                                                    tol=1e-12).predict(X[:4]))(X)
    np.testing.assert_allclose(traced, eager.predict(X[:4]), rtol=0, atol=1e-9)
    for bad in (dict(centers=5), dict(centers=Z, solver="cg"), dict(solver="nystrom")):
        with pytest.raises(ValueError, match="Under jax.jit"):
            jax.jit(lambda X, bad=bad: fit_kernel_predictor(X, Y, **bad).coefs)(X)


def test_nystrom_with_every_point_is_the_exact_fit(digits_rows, x64):
    X, _, Y = (a.astype(np.float64) for a in digits_rows)
    exact, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, solver="cholesky")
    fit, info = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, centers=X, tol=1e-12)
    assert info.solver == "nystrom" and info.rank == len(X)
    assert rel64(fit.coefs, exact.coefs) <= 1e-6
    # sampled centres: all n of them, in another order, give the same predictor
    sampled, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, centers=len(X), tol=1e-12)
    assert rel64(sampled.predict(X), exact.predict(X)) <= 1e-6


@pytest.mark.slow
def test_nystrom_float32_and_fewer_centres(digits_rows):
    X, y, Y = digits_rows
    exact, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, solver="cholesky")
    full, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, centers=len(X), tol=1e-7)
    assert rel64(full.predict(X), exact.predict(X)) <= 1e-4
    small, info = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, centers=100)
    assert small.centers.shape == (100, X.shape[1]) and info.rank == 100
    # an estimator, not the exact fit: fewer centres fit the training data less closely
    accuracy = np.mean(np.argmax(np.asarray(small.predict(X)), axis=1) == y)
    assert 0.8 < accuracy < 1.0


@pytest.mark.slow
def test_device_preconditioner_gives_the_same_fit(digits_rows, monkeypatch):
    """The accelerator path of the Falkon preconditioner (float32 factors on the device,
    taken here on the CPU by pretending the backend is a GPU) factors
    ``(n/m) K_mm^2 + reg K_mm`` and converges to the host float64 path's coefficients."""
    from dnc_jax.kernels import kernel_matrix
    from dnc_jax.solvers.nystrom import falkon_factors_on_device

    X, _, Y = digits_rows
    Z = jnp.asarray(X[:150])
    K = kernel_matrix(Z, Z, "laplace", 2.0)
    L, R = falkon_factors_on_device(K, len(X), 1e-3)
    LR = np.asarray(L, np.float64) @ np.asarray(R, np.float64)
    K64 = np.asarray(K, np.float64)
    target = (len(X) / 150) * K64 @ K64 + 1e-3 * K64
    assert rel64(LR @ LR.T, target) <= 1e-3
    host, host_info = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, centers=150, tol=1e-6)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    device, device_info = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, centers=150, tol=1e-6)
    assert rel64(device.coefs, host.coefs) <= 1e-3
    assert abs(device_info.iterations - host_info.iterations) <= 3


@pytest.mark.slow
def test_nystrom_recomputed_rows_and_the_cpu_host_factors(digits_rows, monkeypatch):
    """Sharded over 4 devices with padding rows, Nyström's kernel rows recomputed in every
    product (``memory_budget=0``) give the held rows' fit; on a CPU backend the Falkon
    factors are the host's float64 ones, elsewhere the device's."""
    from dnc_jax.solvers import nystrom

    X, _, Y = digits_rows
    mesh = data_mesh("all")
    held, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, centers=100, mesh=mesh, tol=1e-7)
    recomputed, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, centers=100, mesh=mesh, tol=1e-7,
                                     memory_budget=0, block_size=64)
    # float32 products in another order, times the normal equations' conditioning
    assert rel64(recomputed.predict(X[:40]), held.predict(X[:40])) <= 3e-4

    def refuse(*args, **kwargs):
        raise AssertionError("the other backend's factors")

    monkeypatch.setattr(nystrom, "falkon_factors_on_device", refuse)
    fit_kernel_ridge(X, Y, bandwidth=2.0, centers=50)  # CPU: host factors
    monkeypatch.undo()
    monkeypatch.setattr(nystrom, "falkon_factors", refuse)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    fit_kernel_ridge(X, Y, bandwidth=2.0, centers=50)  # elsewhere: device factors


def test_device_falkon_factors_jitter_ladder(rng, x64):
    """``falkon_factors_on_device`` in float64: ``L L^T = K + eps mean(diag K) I`` with
    ``eps`` = 1e-13, then ten times more while a factor is not finite, and
    ``R R^T = (n/m) L^T L + reg I``; a matrix that needs more than 1e-2 raises (repeated
    ``eps *= 10`` used to reach 0.0099999 and try 0.1 too)."""
    from dnc_jax.solvers.nystrom import falkon_factors_on_device

    B = rng.standard_normal((6, 3))
    base = 4.0 * (B @ B.T)  # rank 3, mean diagonal ~12
    scale = np.mean(np.diag(base))
    for k, delta in ((0, None), (3, 3e-11), (7, 3e-7), (11, 3e-3)):
        K = 4.0 * np.eye(6) + base if delta is None else base - delta * np.mean(np.diag(base)) * np.eye(6)
        scale = np.mean(np.diag(K))
        eps = 1e-13 * 10.0**k
        L, R = (np.asarray(f) for f in falkon_factors_on_device(jnp.asarray(K), 30, 1e-3))
        np.testing.assert_allclose(L @ L.T, K + eps * scale * np.eye(6), rtol=1e-13,
                                   atol=1e-13 * scale)
        np.testing.assert_allclose(R @ R.T, 5.0 * L.T @ L + 1e-3 * np.eye(6), rtol=ROUNDING[F64],
                                   atol=ROUNDING[F64] * scale)
    with pytest.raises(ValueError, match="not positive definite"):
        falkon_factors_on_device(jnp.asarray(base - 0.05 * scale * np.eye(6)), 30, 1e-3)
    with pytest.raises(ValueError, match="not positive definite"):  # R's matrix indefinite
        falkon_factors_on_device(jnp.asarray(base + np.eye(6)), 30, -1e3)
    L, _ = falkon_factors_on_device(jnp.zeros((3, 3)), 30, 1e-3)  # jitter relative to 1
    np.testing.assert_allclose(np.asarray(L) @ np.asarray(L).T, 1e-13 * np.eye(3), rtol=ROUNDING[F64])
