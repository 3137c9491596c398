"""Squared distances: exact near zero, near pairs recomputed by difference, float32 against float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dnc_jax import (
    kernel_agop,
    laplace_kernel,
)
from dnc_jax.kernels import NEAR_PAIRS, Kernel, kernel_distances, squared_distances
from dnc_jax.predictor import KernelPredictor


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


def _unit_rows(rng, n, d):
    X = rng.standard_normal((n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.mark.slow
def test_self_distance_exactly_zero_with_finite_derivative(rng):
    X = jnp.asarray(_unit_rows(rng, 64, 50), jnp.float32)
    X = jnp.concatenate([X, X[:3]])  # exact duplicates of rows 0-2
    d2 = np.asarray(kernel_distances(X, X, "laplace"))
    np.testing.assert_array_equal(np.diag(d2), 0.0)
    for i in range(3):
        assert d2[i, 64 + i] == 0.0 and d2[64 + i, i] == 0.0
    # the expansion alone leaves round-off, not zero, on the diagonal of float32 distances
    assert np.any(np.diag(np.asarray(squared_distances(X, X))) != 0.0)
    grad = jax.grad(lambda A: jnp.sum(laplace_kernel(A, X, 1.0)))(X)
    assert np.isfinite(np.asarray(grad)).all()


def _close_pair(rng, d, gap):
    """Two unit-norm points ``gap`` apart (float64)."""
    x = _unit_rows(rng, 1, d)[0]
    step = rng.standard_normal(d)
    step -= (step @ x) * x
    z = x + gap * step / np.linalg.norm(step)
    return np.stack([x, z / np.linalg.norm(z)])


def test_near_distances_match_float64_relative(rng, x64):
    X = _unit_rows(rng, 40, 30)
    X[:2] = _close_pair(rng, 30, 1e-3)
    d64 = np.sum((X[:, None, :] - X[None, :, :]) ** 2, axis=-1)
    d32 = np.asarray(kernel_distances(jnp.asarray(X, jnp.float32), jnp.asarray(X, jnp.float32),
                                      "laplace"))
    # the nearest NEAR_PAIRS per row are recomputed: relative, not absolute, round-off
    near = np.argsort(d64, axis=1)[:, :NEAR_PAIRS]
    rows = np.arange(40)[:, None]
    ref = d64[rows, near]
    got = d32[rows, near]
    positive = ref > 0
    assert np.max(np.abs(got[positive] - ref[positive]) / ref[positive]) < 1e-3


@pytest.mark.parametrize("with_metric", [False, True])
def test_points_1e3_apart_keep_their_gradient_in_float32(rng, x64, with_metric):
    d = 20
    P = _close_pair(rng, d, 1e-3)
    coefs = np.array([[1.0], [-1.0]])
    M = None
    if with_metric:
        A = rng.standard_normal((d, d)) / np.sqrt(d)
        M = A @ A.T + np.eye(d)

    def agop_in(dtype):
        c = jnp.asarray(P, dtype)
        metric = None if M is None else jnp.asarray(M, dtype)
        pred = KernelPredictor(Kernel("laplace", 1.0, metric), c, jnp.asarray(coefs, dtype))
        return np.asarray(kernel_agop(pred, c), np.float64)

    ref, got = agop_in(jnp.float64), agop_in(jnp.float32)
    assert np.linalg.norm(ref) > 0.5  # the pair's gradient (weight k / (L r) times r)
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 1e-3


@pytest.mark.parametrize("m,k", [(9, 3), (701, 3), (2000, 8)])
def test_nearest_columns_are_each_rows_k_smallest(rng, m, k):
    """The two-stage selection (groups' minima, then their entries) picks each row's ``k``
    smallest entries, as a full stable sort and ``lax.top_k`` do: on rows where they sit in
    one group, at the row's end (the padded last group), spread out, with NaN entries
    (counted largest), and with ties (the lower columns win, so the same pairs are refined)."""
    from dnc_jax.kernels.distances import nearest_columns

    D = rng.permutation(np.arange(6 * m, dtype=np.float32)).reshape(6, m)  # distinct values
    D[1, :k] = -1.0 - np.arange(k)  # all in the first group
    D[2, -k:] = -1.0 - np.arange(k)  # all at the end
    D[3, rng.choice(m, m // 3, replace=False)] = np.nan
    D[4] = rng.integers(0, 3, m)  # ties everywhere: the lower columns, as lax.top_k
    D[5, -2 * k:] = 0.0  # ties across groups, in the padded last one
    got = np.sort(np.asarray(nearest_columns(jnp.asarray(D), k)), axis=1)
    order = np.argsort(np.where(np.isnan(D), np.inf, D), axis=1, kind="stable")
    np.testing.assert_array_equal(got, np.sort(order[:, :k], axis=1))
    no_nan = np.where(np.isnan(D), np.inf, D)
    top = np.sort(np.asarray(jax.lax.top_k(-jnp.asarray(no_nan), k)[1]), axis=1)
    np.testing.assert_array_equal(got, top)
