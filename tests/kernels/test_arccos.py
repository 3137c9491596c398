"""The ReLU NTK and NNGP against an independent recursion and a wide network's empirical NTK."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dnc_jax import Kernel

# ---------------------------------------------------------------- ReLU NTK and NNGP


def _arccos_reference(x, z, depth):
    """Independent float64 recursion on the correlation ``rho`` (norms are preserved with
    sigma_w^2 = 2): ``rho' = (sqrt(1 - rho^2) + (pi - arccos rho) rho) / pi`` (Cho & Saul's
    first-order arc-cosine kernel), ``Theta' = Sigma' + Theta (pi - arccos rho) / pi``."""
    d = len(x)
    sxx, szz = 2 * x @ x / d, 2 * z @ z / d
    sigma = 2 * x @ z / d
    theta = sigma
    for _ in range(depth):
        rho = np.clip(sigma / np.sqrt(sxx * szz), -1.0, 1.0)
        angle = np.arccos(rho)
        new_rho = (np.sqrt(1 - rho**2) + (np.pi - angle) * rho) / np.pi
        theta = new_rho * np.sqrt(sxx * szz) + theta * (np.pi - angle) / np.pi
        sigma = new_rho * np.sqrt(sxx * szz)
    return sigma, theta


@pytest.mark.parametrize("depth", [1, 3])
def test_relu_ntk_and_nngp_equal_an_independent_recursion(rng, x64, depth):
    from dnc_jax.kernels import ArcCosine

    X = rng.standard_normal((6, 5))
    Z = np.concatenate([X[:2], rng.standard_normal((4, 5))])  # equal points included
    ntk = np.asarray(Kernel(ArcCosine("ntk", depth))(jnp.asarray(X), jnp.asarray(Z)))
    nngp = np.asarray(Kernel(ArcCosine("nngp", depth))(jnp.asarray(X), jnp.asarray(Z)))
    ref = np.array([[_arccos_reference(x, z, depth) for z in Z] for x in X])
    np.testing.assert_allclose(nngp, ref[..., 0], rtol=1e-6)  # the clip at +-1: ~1e-7
    np.testing.assert_allclose(ntk, ref[..., 1], rtol=1e-6)


@pytest.mark.slow
def test_relu_ntk_equals_a_wide_networks_empirical_ntk(key):
    """The empirical NTK of random width-1024, two-hidden-layer ReLU networks (NTK
    parameterisation, sigma_w^2 = 2), averaged over 8 draws, is within 4 standard errors of
    the draws' spread of the analytic NTK."""
    from dnc_jax.kernels import ArcCosine

    d, width, draws = 4, 1024, 8
    X = jax.random.normal(jax.random.fold_in(key, 99), (3, d))

    def network(params, x):
        h = x
        for W in params[:-1]:
            h = jax.nn.relu(jnp.sqrt(2.0 / W.shape[1]) * W @ h)
        return jnp.sqrt(2.0 / params[-1].shape[0]) * params[-1] @ h

    def empirical(k):
        ks = jax.random.split(k, 3)
        params = [jax.random.normal(ks[0], (width, d)), jax.random.normal(ks[1], (width, width)),
                  jax.random.normal(ks[2], (width,))]
        J = jax.vmap(lambda x: jax.grad(network)(params, x))(X)
        flat = jnp.concatenate([j.reshape(3, -1) for j in J], axis=1)
        return flat @ flat.T

    samples = np.stack([np.asarray(empirical(k)) for k in jax.random.split(key, draws)])
    analytic = np.asarray(Kernel(ArcCosine("ntk", 2))(X, X))
    sem = samples.std(axis=0, ddof=1) / np.sqrt(draws)
    assert np.all(np.abs(samples.mean(axis=0) - analytic) <= 4 * sem + 1e-3 * np.abs(analytic))


def test_the_default_relu_kernel_has_one_hidden_layer(rng, x64):
    """``ArcCosine()`` is the NTK of one hidden ReLU layer (the official code's ``ntk.py``
    default), against the independent recursion; a frozen, hashable value."""
    from dnc_jax.kernels import ArcCosine

    X, Z = rng.standard_normal((4, 5)), rng.standard_normal((3, 5))
    ref = np.array([[_arccos_reference(x, z, 1)[1] for z in Z] for x in X])
    np.testing.assert_allclose(Kernel(ArcCosine())(jnp.asarray(X), jnp.asarray(Z)), ref,
                               rtol=1e-6)
    hash(ArcCosine())  # a static value under jit: hashable and immutable
    with pytest.raises(dataclasses.FrozenInstanceError):
        ArcCosine().depth = 2  # type: ignore[misc]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["ntk", "nngp"])
def test_relu_kernel_gradient_is_finite_at_equal_points_and_a_zero_row_gives_zero(kind, dtype):
    """Rows with small integer entries make ``cos`` exactly 1 at a point against itself,
    where ``arccos``'s derivative is infinite: the clip just inside 1 (``1 - 1e-7`` in
    float32, ``1 - 1e-15`` in float64) keeps the gradient finite (the AGOP at training
    points takes it), and moves the values by about ``sqrt(2 * 1e-7)`` of the angle at
    most (float32: within 1e-3 relative of the float64 recursion). A zero row (norm 0)
    has kernel 0 with every row, not 0/0."""
    from dnc_jax.kernels import ArcCosine

    rows = np.array([[1.0, 2.0, 0.0, 1.0], [2.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    with jax.enable_x64(dtype == np.float64):
        X = jnp.asarray(rows, dtype)
        kernel = Kernel(ArcCosine(kind, 2))
        K = kernel(X, X)
        grad = jax.grad(lambda x: kernel(x[None], X[:2]).sum())(X[0])
    assert K.dtype == dtype and bool(jnp.isfinite(K).all())
    ref = np.array([[_arccos_reference(x, z, 2)[kind == "ntk"] for z in rows[:2]] for x in rows[:2]])
    np.testing.assert_allclose(K[:2, :2], ref, rtol=1e-3 if dtype == np.float32 else 1e-6)
    np.testing.assert_array_equal(K[2], 0.0)
    np.testing.assert_array_equal(K[:, 2], 0.0)
    assert bool(jnp.isfinite(grad).all())
