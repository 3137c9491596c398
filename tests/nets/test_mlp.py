"""The MLP's layout and initialisations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dnc_jax.nets import MLP, forward_from


@pytest.mark.slow
def test_mlp_shape_and_bias_layout():
    assert all(b is None for _, b in MLP(12, 16, 3, 3, rngs=nnx.Rngs(0)).weights())  # paper
    model = MLP(12, 16, 3, 3, bias=True, rngs=nnx.Rngs(0))
    layers = model.weights()
    assert [W.shape for W, _ in layers] == [(16, 12), (16, 16), (16, 16), (3, 16)]
    assert [b is None for _, b in layers] == [True, False, False, True]
    # PyTorch's nn.Linear default for the classifier: U(+-1/sqrt(fan_in)), gain-free
    torch_cls = MLP(12, 400, 3, 1, init_gain=0.1, classifier_init="torch",
                    rngs=nnx.Rngs(0)).weights()[-1][0]
    assert 0.9 / 20 < float(jnp.abs(torch_cls).max()) <= 1 / 20
    with pytest.raises(ValueError, match="classifier_init"):
        MLP(12, 16, 3, 1, classifier_init="he", rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 12)), jnp.float32)
    np.testing.assert_allclose(model(x), forward_from(x, layers), rtol=1e-6)
    # against the nnx.Linear modules applied by hand (not the function __call__ uses)
    h = x
    for i, layer in enumerate(model.layers):
        h = layer(h)
        h = jax.nn.relu(h) if i < len(model.layers) - 1 else h
    np.testing.assert_allclose(model(x), h, rtol=1e-5, atol=1e-6)
    # small init: Xavier-uniform bound times the gain
    bound = 0.1 * np.sqrt(6 / (12 + 16))
    assert float(jnp.abs(layers[0][0]).max()) <= bound


def test_xavier_normal_and_torch_input_init():
    """``init="xavier_normal"``: untruncated normal, std ``gain sqrt(2/(fan_in+fan_out))``
    (kurtosis 3, not the uniform's 1.8); ``input_init="torch"``: the first layer uniform on
    ``+-1/sqrt(fan_in)``, as the paper's backbone heads leave it."""
    model = MLP(400, 300, 10, 2, init_gain=0.1, init="xavier_normal", input_init="torch",
                rngs=nnx.Rngs(0))
    (W0, _), (W1, _), _ = model.weights()
    W1 = np.asarray(W1, np.float64).ravel()
    assert abs(W1.std() / (0.1 * np.sqrt(2 / 600)) - 1) < 0.02
    assert abs(np.mean(W1**4) / np.mean(W1**2) ** 2 - 3.0) < 0.1
    W0 = np.asarray(W0, np.float64).ravel()
    assert np.abs(W0).max() <= 1 / np.sqrt(400)
    assert abs(W0.std() * np.sqrt(3 * 400) - 1) < 0.02
    with pytest.raises(ValueError, match="init"):
        MLP(4, 3, 2, 1, init="he", rngs=nnx.Rngs(0))
