"""The per-layer analysis: weight SVD against the AGOP, the NFA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dnc_jax.nets import TrainConfig, forward_from, layer_agops, layer_analysis, train_mlp
from dnc_jax.nets.analysis import right_singular_step

# ---------------------------------------------------------------- layer_analysis protocol


class _UsersNet(nnx.Module):
    """A user's own module: a ``layers`` list of ``nnx.Linear`` with ReLU between."""

    def __init__(self, rngs):
        self.layers = nnx.List([nnx.Linear(6, 10, use_bias=False, rngs=rngs),
                                nnx.Linear(10, 10, use_bias=False, rngs=rngs),
                                nnx.Linear(10, 3, use_bias=False, rngs=rngs)])

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
        return self.layers[-1](x)


@pytest.mark.slow
def test_layer_analysis_reads_any_module_that_exposes_its_layers(rng):
    from dnc_jax import layer_analysis

    model = _UsersNet(nnx.Rngs(0))
    X = jnp.asarray(rng.standard_normal((60, 6)), jnp.float32)
    y = np.arange(60) % 3
    weights = tuple((m.kernel[...].T, None) for m in model.layers)
    got, ref = layer_analysis(model, X, y, activation="relu"), layer_analysis(weights, X, y)
    assert len(got) == 2
    for a, b in zip(got, ref, strict=True):
        assert a.nfa_agop == b.nfa_agop and a.output.nc1 == b.output.nc1
    # the forward pass the protocol assumes is the module's own

    np.testing.assert_allclose(forward_from(X, weights), jax.vmap(model)(X), rtol=1e-5,
                               atol=1e-6)

    class NoLayers(nnx.Module):
        def __call__(self, x):
            return x

    with pytest.raises(ValueError, match="Cannot read the layers of NoLayers"):
        layer_analysis(NoLayers(), X, y)
    # no activation named: refused, not assumed; a wrong one: refused by its outputs
    with pytest.raises(ValueError, match="_UsersNet names no activation"):
        layer_analysis(model, X, y)
    with pytest.raises(ValueError, match="do not reproduce its own outputs"):
        layer_analysis(model, X, y, activation="tanh")


def test_right_singular_step_then_U_is_the_preactivation(rng):
    W = jnp.asarray(rng.standard_normal((7, 11)), jnp.float32)
    H = jnp.asarray(rng.standard_normal((20, 11)), jnp.float32)
    right, U = right_singular_step(H, W)
    assert right.shape == (20, 7)
    np.testing.assert_allclose(right @ U.T, H @ W.T, rtol=1e-4, atol=1e-4)


def _balanced_linear_layers(rng, k, num_layers):
    """W_l = Q_{l+1} S Q_l^T with orthogonal Q's: W_{l+1}^T W_{l+1} = W_l W_l^T (balanced)."""
    Q = [np.linalg.qr(rng.standard_normal((k, k)))[0] for _ in range(num_layers + 1)]
    S = np.diag(rng.uniform(0.5, 1.5, k))
    return tuple((jnp.asarray(Q[l + 1] @ S @ Q[l].T), None) for l in range(num_layers))


def test_nfa_on_balanced_deep_linear_network(rng, x64):
    """At a balanced point of a deep linear network with ``L`` layers, the sub-network from
    layer ``l`` has constant Jacobian ``J = W_{L-1} ... W_l``, and by balancedness
    (``W_{l+1}^T W_{l+1} = W_l W_l^T``)
    ``J^T J = W_l^T (W_l W_l^T)^(m-1) W_l = (W_l^T W_l)^m`` with ``m = L - l`` factors.
    So ``AGOP_l = (W_l^T W_l)^m`` exactly, and the NFA correlations must equal
    ``pearson(G, G^m)`` and ``pearson(G, G^(m/2))`` with ``G = W_l^T W_l``."""
    k, num_layers = 6, 4
    layers = _balanced_linear_layers(rng, k, num_layers)
    X = rng.standard_normal((30, k))
    y = np.arange(30) % 3
    records = layer_analysis(layers, X, y, activation="identity")
    H = jnp.asarray(X)
    for l, rec in enumerate(records):
        W = np.asarray(layers[l][0])
        G = W.T @ W
        m = num_layers - l
        A = np.asarray(layer_agops(layers, [H] * (l + 1), "identity")[l])
        np.testing.assert_allclose(A, np.linalg.matrix_power(G, m), rtol=1e-9, atol=1e-9)
        evals, evecs = np.linalg.eigh(G)
        sqrt_agop = (evecs * evals ** (m / 2)) @ evecs.T
        # expected values from numpy's corrcoef, not the library's own pearson (a cosine
        # without centring would pass a self-referential check)
        corr = np.corrcoef(G.ravel(), np.linalg.matrix_power(G, m).ravel())[0, 1]
        assert rec.nfa_agop == pytest.approx(corr, abs=1e-9)
        assert rec.nfa_sqrt_agop == pytest.approx(
            np.corrcoef(G.ravel(), sqrt_agop.ravel())[0, 1], abs=1e-9)
        H = H @ layers[l][0].T
    # with two factors left, AGOP^(1/2) is exactly W^T W: correlation 1
    assert records[-1].nfa_sqrt_agop == pytest.approx(1.0, abs=1e-9)


def test_agop_projection_is_the_agop_square_root_up_to_rotation(rng):
    """``Phi V_a S_a (Phi V_a S_a)^T = Phi A Phi^T``; so NC1 equals that of ``Phi A^(1/2)``."""
    from dnc_jax.collapse import collapse_metrics
    from dnc_jax.gradient_outer_product import matrix_power
    from dnc_jax.nets.analysis import agop_projection

    G = rng.standard_normal((5, 6))
    A = G.T @ G  # (6, 6), rank 5, PSD
    Phi = jnp.asarray(rng.standard_normal((40, 6)), jnp.float32)
    y = np.arange(40) % 4
    P = np.asarray(agop_projection(Phi, A), np.float64)
    Phi64 = np.asarray(Phi, np.float64)
    np.testing.assert_allclose(P @ P.T, Phi64 @ A @ Phi64.T, rtol=1e-4, atol=1e-4)
    root = jnp.asarray(matrix_power(A, 0.5), jnp.float32)
    assert collapse_metrics(P, y).nc1 == pytest.approx(collapse_metrics(Phi @ root, y).nc1,
                                                       rel=1e-4)


def test_agop_eigh_in_the_weights_row_space(rng, x64):
    """For ``A = W^T B W`` with a wide ``W`` (3 x 10), the decomposition in ``W``'s row
    space gives back ``A`` and ``A^(1/2)`` (as the full ``eigh`` does) from 3 pairs."""
    from dnc_jax.gradient_outer_product import matrix_power
    from dnc_jax.nets.analysis import agop_eigh, agop_projection

    W = rng.standard_normal((3, 10))
    C = rng.standard_normal((3, 3))
    A = W.T @ (C @ C.T) @ W
    evals, evecs = agop_eigh(A, W)
    assert evals.shape == (3,) and evecs.shape == (10, 3)
    np.testing.assert_allclose((evecs * evals) @ evecs.T, A, atol=1e-10)
    np.testing.assert_allclose((evecs * np.sqrt(evals)) @ evecs.T, matrix_power(A, 0.5),
                               atol=1e-7)
    Phi = jnp.asarray(rng.standard_normal((7, 10)))
    P = np.asarray(agop_projection(Phi, A, W))
    np.testing.assert_allclose(P @ P.T, np.asarray(Phi) @ A @ np.asarray(Phi).T, atol=1e-9)


@pytest.mark.slow
def test_layer_analysis_of_what_train_mlp_returns(digits_400):
    """``train_mlp`` returns a ``Network``; ``layer_analysis`` takes it as the README does,
    and measures its head as it measures the bare MLP."""
    d = digits_400
    config = TrainConfig(depth=2, width=16, epochs=1, batch_size=50, measure_every=1)
    model, history = train_mlp(d.X_train, d.y_train, config=config)
    direct = layer_analysis(model, d.X_train, d.y_train)
    assert direct == layer_analysis(model.head, d.X_train, d.y_train) == history[-1].layers
