"""The paper's MLP in Flax NNX, and a pure forward pass over its weights.

``Linear(d, w) + act``, ``(depth - 1) x (Linear(w, w) + act)``, ``Linear(w, C)``, without
biases (as the paper's code, ``nc_nn.py`` lines 594-611); ``bias=True`` adds them to the
hidden layers after the first. Hidden weights are Xavier with gain ``init_gain``: uniform
on ``+-gain * sqrt(6 / (fan_in + fan_out))`` (``init="xavier_uniform"``, ``nc_nn.py``) or
normal with standard deviation ``gain * sqrt(2 / (fan_in + fan_out))``
(``"xavier_normal"``, ``nc_nn_ratio.py`` lines 391, 399). The classifier is the same
(``classifier_init="xavier"``) or PyTorch's ``nn.Linear`` default, uniform on
``+-1/sqrt(fan_in)`` (``"torch"``, as the paper's code leaves it); ``input_init="torch"``
leaves the first layer at that default too, as the paper's backbone heads do (``nc_nn.py``
lines 623-627: only the layers after the first are re-initialised).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

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

CLASSIFIER_INITS = ("xavier", "torch")
INITS = ("xavier_uniform", "xavier_normal")

# PyTorch's nn.Linear / nn.Conv2d default, U(+-1/sqrt(fan_in)): variance 1/(3 fan_in)
TORCH_LINEAR_INIT = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")

# One layer as plain arrays: W of shape (out, in) (the maths' convention) and bias or None.
Layer = tuple[jax.Array, jax.Array | None]


class MLP(nnx.Module):
    """MLP with ``depth`` hidden layers of ``width`` units and a bias-free classifier.

    Args:
      in_dim: input features.
      width: units per hidden layer.
      out_dim: outputs (classes).
      depth: hidden layers (``>= 1``).
      init_gain: Xavier gain of the hidden weights (and of the classifier's with
        ``classifier_init="xavier"``).
      init: ``"xavier_uniform"`` or ``"xavier_normal"``.
      activation: a key of ``ACTIVATIONS``.
      bias: biases on the hidden layers after the first.
      classifier_init: ``"xavier"`` or ``"torch"`` (module docstring).
      input_init: ``"xavier"`` or ``"torch"`` (module docstring).
      rngs: ``nnx.Rngs``.

    ``__call__`` maps ``(..., in_dim)`` to ``(..., out_dim)``.
    """

    def __init__(self, in_dim: int, width: int, out_dim: int, depth: int, *,
                 init_gain: float = 0.1, init: str = "xavier_uniform",
                 activation: str = "relu", bias: bool = False, classifier_init: str = "xavier",
                 input_init: str = "xavier", rngs: nnx.Rngs):
        if depth < 1:
            raise ValueError(f"depth must be >= 1; got {depth}.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}; got {activation!r}.")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}; got {init!r}.")
        for name, value in (("classifier_init", classifier_init), ("input_init", input_init)):
            if value not in CLASSIFIER_INITS:
                raise ValueError(f"{name} must be one of {CLASSIFIER_INITS}; got {value!r}.")
        distribution: Literal["uniform", "normal"] = (
            "uniform" if init == "xavier_uniform" else "normal")
        xavier = nnx.initializers.variance_scaling(init_gain**2, "fan_avg", distribution)
        inits = [TORCH_LINEAR_INIT if input_init == "torch" else xavier] + [xavier] * (depth - 1)
        inits.append(TORCH_LINEAR_INIT if classifier_init == "torch" else xavier)
        sizes = [in_dim] + [width] * depth + [out_dim]
        self.activation = activation
        self.layers = nnx.List([
            nnx.Linear(sizes[i], sizes[i + 1], use_bias=bias and 0 < i < depth,
                       kernel_init=inits[i], rngs=rngs)
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


def activation_function(activation: str | Callable[[jax.Array], jax.Array]
                        ) -> Callable[[jax.Array], jax.Array]:
    """The elementwise function named by ``activation`` (a key of ``ACTIVATIONS``) or the
    callable itself; ``ValueError`` for anything else."""
    if callable(activation):
        return activation
    if activation in ACTIVATIONS:
        return ACTIVATIONS[activation]
    raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)} or an elementwise "
                     f"function; got {activation!r}.")


def forward_from(h: jax.Array, layers: tuple[Layer, ...],
                 activation: str | Callable[[jax.Array], jax.Array] = "relu") -> jax.Array:
    """Apply ``layers`` to ``h`` (``(..., in)``): ``activation`` (a name or a function)
    after all but the last.

    With ``layers = model.weights()[l:]`` this is the sub-network from layer ``l`` up,
    whose AGOP with respect to ``h`` the Neural Feature Ansatz compares with ``W_l^T W_l``.
    """
    act = activation_function(activation)
    for i, (W, b) in enumerate(layers):
        h = matmul(h, W.T)
        if b is not None:
            h = h + jnp.broadcast_to(b, h.shape)
        if i < len(layers) - 1:
            h = act(h)
    return h
