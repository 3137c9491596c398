"""Per-layer AGOPs of a network against float64 autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dnc_jax.nets import MLP, forward_from, layer_agops


@pytest.mark.slow
def test_layer_agop_equals_float64_autodiff(rng):
    model = MLP(9, 12, 4, 3, init_gain=1.0, rngs=nnx.Rngs(1))
    layers = model.weights()
    X = rng.standard_normal((25, 9)).astype(np.float32)
    inputs = [jnp.asarray(X)]
    for W, b in layers[:-2]:
        inputs.append(jax.nn.relu(inputs[-1] @ W.T + (0.0 if b is None else b[None, :])))
    got = layer_agops(layers, inputs, batch_size=7)
    with jax.enable_x64(True):
        layers64 = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), layers)
        for l, H in enumerate(inputs):
            H64 = np.asarray(H, np.float64)
            subnet = jax.jacrev(lambda h, above=layers64[l:]: forward_from(h, above))
            jac = [np.asarray(subnet(jnp.asarray(h))) for h in H64]
            ref = sum(J.T @ J for J in jac) / len(jac)
            np.testing.assert_allclose(got[l], ref, rtol=2e-4, atol=1e-6 * np.abs(ref).max())


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("bias", [False, True])
def test_shared_pass_equals_per_layer_autodiff(rng, x64, activation, bias):
    """One backward pass for every layer's AGOP (``shared_layer_agops``) equals the
    per-layer ``vmap(jacrev)`` of the sub-network above it (``layer_agops``), float64."""
    from dnc_jax.nets.layer_agop import shared_layer_agops

    sizes = [12, 16, 9, 11, 4]  # three hidden layers of different widths, C = 4
    layers = []
    for i in range(len(sizes) - 1):
        W = jnp.asarray(rng.standard_normal((sizes[i + 1], sizes[i])) / np.sqrt(sizes[i]))
        last = i == len(sizes) - 2
        b = None if (last or not bias) else jnp.asarray(0.3 * rng.standard_normal(sizes[i + 1]))
        layers.append((W, b))
    layers = tuple(layers)
    X = jnp.asarray(rng.standard_normal((37, sizes[0])))
    inputs, h = [], X
    for W, b in layers[:-1]:
        inputs.append(h)
        z = h @ W.T + (0.0 if b is None else b[None, :])
        h = jnp.maximum(z, 0.0) if activation == "relu" else jnp.tanh(z)
    reference = layer_agops(layers, inputs, activation, batch_size=8)
    shared = shared_layer_agops(layers, X, activation, batch_size=8)  # 37 = 4 x 8 + 5
    assert len(shared) == 3
    for ours, ref in zip(shared, reference, strict=True):
        assert ours.shape == ref.shape
        assert float(jnp.linalg.norm(ours - ref) / jnp.linalg.norm(ref)) < 1e-12
    with pytest.raises(ValueError, match="features"):
        shared_layer_agops(layers, X[:, :5], activation)
    with pytest.raises(ValueError, match="NaN"):
        shared_layer_agops(layers, X.at[0, 0].set(jnp.nan), activation)
