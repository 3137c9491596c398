"""The paper's MLP in Flax NNX, and a pure forward pass over its weights.

``Linear(d, w, no bias) + act``, ``(depth - 1) x (Linear(w, w) + act)``, ``Linear(w, C, no
bias)``; every weight Xavier-uniform with gain ``init_gain`` (default 0.1, "small init"):
entries uniform on ``+-gain * sqrt(6 / (fan_in + fan_out))``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from dnc_jax.precision import matmul

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "identity": lambda x: x,
}

# One layer as plain arrays: W of shape (out, in) (the maths' convention) and bias or None.
Layer = tuple[jax.Array, jax.Array | None]


class MLP(nnx.Module):
    """MLP with ``depth`` hidden layers of ``width`` units and a bias-free classifier.

    Args:
      in_dim, width, out_dim, depth: sizes (``depth >= 1`` hidden layers).
      init_gain: Xavier-uniform gain of every weight.
      activation: a key of ``ACTIVATIONS``.
      rngs: ``nnx.Rngs``.

    ``__call__`` maps ``(..., in_dim)`` to ``(..., out_dim)``.
    """

    def __init__(self, in_dim: int, width: int, out_dim: int, depth: int, *,
                 init_gain: float = 0.1, activation: str = "relu", rngs: nnx.Rngs):
        if depth < 1:
            raise ValueError(f"depth must be >= 1; got {depth}.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}; got {activation!r}.")
        init = nnx.initializers.variance_scaling(init_gain**2, "fan_avg", "uniform")
        sizes = [in_dim] + [width] * depth + [out_dim]
        self.activation = activation
        self.layers = nnx.List([
            nnx.Linear(sizes[i], sizes[i + 1], use_bias=0 < i < depth, kernel_init=init,
                       rngs=rngs)
            for i in range(depth + 1)
        ])

    def __call__(self, x: jax.Array) -> jax.Array:
        return forward_from(x, self.weights(), self.activation)

    def weights(self) -> tuple[Layer, ...]:
        """Every linear layer as ``(W (out, in), bias or None)``, input side first."""
        return tuple(
            (layer.kernel[...].T, None if layer.bias is None else layer.bias[...])
            for layer in self.layers
        )


def forward_from(h: jax.Array, layers: tuple[Layer, ...], activation: str = "relu") -> jax.Array:
    """Apply ``layers`` to ``h`` (``(..., in)``): activation after all but the last.

    With ``layers = model.weights()[l:]`` this is the sub-network from layer ``l`` up,
    whose AGOP with respect to ``h`` the Neural Feature Ansatz compares with ``W_l^T W_l``.
    """
    act = ACTIVATIONS[activation]
    for i, (W, b) in enumerate(layers):
        h = matmul(h, W.T)
        if b is not None:
            h = h + jnp.broadcast_to(b, h.shape)
        if i < len(layers) - 1:
            h = act(h)
    return h
