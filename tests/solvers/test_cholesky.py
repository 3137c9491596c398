"""The exact solve: solve_psd's float64 rebuild and jitter ladder, the blocked factorisation."""


import jax.numpy as jnp
import numpy as np
import pytest
from helpers import rel64

from dnc_jax import Kernel, fit_kernel_ridge


def test_solve_psd_rebuilds_in_float64_and_solves_to_its_precision(rng):
    """A float32 kernel matrix of nearly coincident points is indefinite past a small ridge
    (its float32 factorisation fails); the float64 rebuild then gives the float64 solve."""
    from dnc_jax.solvers import solve_kernel_system, train_kernel_matrix
    from dnc_jax.solvers.cholesky import _cholesky_solve

    base = rng.standard_normal((1, 5))
    X = (base + 1e-4 * rng.standard_normal((30, 5))).astype(np.float32)
    Y = rng.standard_normal((30, 2)).astype(np.float32)
    reg = 1e-7
    K = train_kernel_matrix(jnp.asarray(X), Kernel("gaussian", 1.0))
    assert not bool(_cholesky_solve(K, jnp.asarray(Y), jnp.float32(reg))[1])  # float32 fails
    alpha = solve_kernel_system(K, jnp.asarray(X), jnp.asarray(Y), reg,
                                kernel=Kernel("gaussian", 1.0))
    assert alpha.dtype == jnp.float32
    X64 = np.asarray(X, np.float64)
    K64 = np.exp(-((X64[:, None] - X64[None]) ** 2).sum(-1) / 2) + reg * np.eye(30)
    ref = np.linalg.solve(K64, np.asarray(Y, np.float64))
    # condition ~3e8: float64 solves agree to ~1e-7, then the float32 cast
    assert np.linalg.norm(np.asarray(alpha, np.float64) - ref) / np.linalg.norm(ref) < 1e-5


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


def test_float64_rebuild_keeps_the_metric(rng):
    """The float64 fallback of an indefinite float32 kernel matrix is rebuilt in the same
    metric ``M`` (here far from the identity): equal to a float64 solve in that metric."""
    from dnc_jax.solvers import solve_kernel_system, train_kernel_matrix
    from dnc_jax.solvers.cholesky import _cholesky_solve

    base = rng.standard_normal((1, 5))
    X = (base + 1e-4 * rng.standard_normal((30, 5))).astype(np.float32)
    Y = rng.standard_normal((30, 2)).astype(np.float32)
    A = rng.standard_normal((5, 5))
    M = (A @ A.T + 10.0 * np.eye(5)).astype(np.float32)  # distances >= sqrt(10) x Euclid
    reg = 1e-7
    K = train_kernel_matrix(jnp.asarray(X), Kernel("gaussian", 1.0, jnp.asarray(M)))
    assert not bool(_cholesky_solve(K, jnp.asarray(Y), jnp.float32(reg))[1])  # float32 fails
    alpha = solve_kernel_system(K, jnp.asarray(X), jnp.asarray(Y), reg,
                                kernel=Kernel("gaussian", 1.0, jnp.asarray(M)))
    X64, M64 = np.asarray(X, np.float64), np.asarray(M, np.float64)

    def solve64(metric):
        diff = X64[:, None] - X64[None]
        K64 = np.exp(-np.einsum("ijk,kl,ijl->ij", diff, metric, diff) / 2) + reg * np.eye(30)
        return np.linalg.solve(K64, np.asarray(Y, np.float64))

    ref, no_metric = solve64(M64), solve64(np.eye(5))
    assert np.linalg.norm(no_metric - ref) > 0.1 * np.linalg.norm(ref)  # M matters here
    # as in the metric-free test: a float64 solve (condition ~1e8-1e9), then the float32 cast
    assert np.linalg.norm(np.asarray(alpha, np.float64) - ref) / np.linalg.norm(ref) < 1e-5


@pytest.mark.slow
def test_blocked_cholesky_equals_lapack_and_takes_over_past_its_size(monkeypatch, digits_rows):
    """The blocked factorisation (LAPACK on diagonal blocks only) solves the same system as
    one LAPACK call, with a block that does not divide ``n``; it flags a failed
    factorisation; past ``LAPACK_CHOLESKY_MAX_N`` rows on a CPU ``solve_psd`` and the exact
    fit run through it."""
    import dnc_jax.solvers.cholesky as cholesky
    from dnc_jax.solvers import solve_psd, train_kernel_matrix

    X, _, Y = digits_rows  # 402 rows
    K = train_kernel_matrix(jnp.asarray(X), Kernel("laplace", 2.0))
    shift = jnp.float32(1e-3)
    direct, ok = cholesky._cholesky_solve(K, jnp.asarray(Y), shift)
    for block in (64, 150, 402, 1000):
        blocked, ok_blocked = cholesky._blocked_cholesky_solve(K, jnp.asarray(Y), shift, block)
        assert bool(ok) and bool(ok_blocked)
        assert rel64(blocked, direct) < 1e-4, block
    indefinite = K - 2.0 * jnp.eye(len(X), dtype=K.dtype)
    assert not bool(cholesky._blocked_cholesky_solve(indefinite, jnp.asarray(Y), shift, 64)[1])
    # a finite factor whose coefficients overflow float32 (near its largest finite value) is flagged
    huge = jnp.asarray(Y) * jnp.float32(3e38)  # Y is one-hot: entries 0 and 3e38
    assert not bool(cholesky._blocked_cholesky_solve(K, huge, shift, 64)[1])

    calls = []

    def spy(K, Y, shift, block):
        calls.append((K.shape[0], block))
        return blocked_solve(K, Y, shift, block)

    blocked_solve = cholesky._blocked_cholesky_solve
    monkeypatch.setattr(cholesky, "_blocked_cholesky_solve", spy)
    monkeypatch.setattr(cholesky, "CHOLESKY_BLOCK", 100)
    monkeypatch.setattr(cholesky, "LAPACK_CHOLESKY_MAX_N", len(X))
    solve_psd(K, jnp.asarray(Y), 1e-3)
    assert calls == []  # at the limit: one LAPACK call
    monkeypatch.setattr(cholesky, "LAPACK_CHOLESKY_MAX_N", len(X) - 1)
    alpha = solve_psd(K, jnp.asarray(Y), 1e-3)
    fit, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, solver="cholesky")
    assert calls == [(len(X), 100)] * 2
    assert rel64(alpha, direct) < 1e-4 and rel64(fit.coefs, direct) < 1e-4
