"""Every hidden layer's AGOP of an MLP from one shared backward pass.

For ``z_l = W_l h_l + b_l``, ``h_{l+1} = act(z_l)`` and output ``z_L = W_L h_L``, the
sub-network from layer ``l`` up has Jacobian ``J_l = G_l W_l`` with respect to its input
``h_l``, where ``G_l = d out / d z_l`` (``C x w_l``) obeys

    G_L = I,    G_l = (G_{l+1} W_{l+1}) * act'(z_l)   (the mask D_l as a broadcast product),

so one backward pass per sample gives every ``G_l``, and

    AGOP_l = (1/n) sum_i J_l^T J_l = W_l^T S_l W_l / n,    S_l = sum_i G_l^T G_l  (w_l x w_l).

Per sample and layer this costs ``2 C w_{l+1} w_l`` for the recursion and ``2 C w_l^2`` for
``S_l``; the per-layer ``vmap(jacrev)`` of the sub-network above ``l`` (``layer_agops``, the
reference approach) repeats the forward and backward passes of every layer above, and
forms ``J_l^T J_l`` at the input width. The two agree to rounding (``tests/nets/test_layer_agop.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from dnc_jax import _checks
from dnc_jax.blocks import row_chunk_sum
from dnc_jax.nets.mlp import ACTIVATIONS, Layer, activation_function
from dnc_jax.precision import PRECISION, matmul


def _activation_and_slope(act: Callable, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(act(z), act'(z))`` elementwise (one forward-mode pass)."""
    return jax.jvp(act, (z,), (jnp.ones_like(z),))


def _gram_sums(layers: tuple[Layer, ...], X: jax.Array, activation: Callable, batch_size: int):
    """``S_l = sum_i G_l^T G_l`` for every hidden layer ``l`` (a tuple of ``(w_l, w_l)``)."""

    def sums(Xb):
        h, slopes = Xb, []
        for W, b in layers[:-1]:
            z = matmul(h, W.T) + (0.0 if b is None else b[None, :])
            h, slope = _activation_and_slope(activation, z)
            slopes.append(slope)
        W_out = layers[-1][0]
        G = jnp.broadcast_to(W_out[None], (Xb.shape[0], *W_out.shape))  # d out / d h_L
        out = []
        for l in range(len(layers) - 2, -1, -1):
            G = G * slopes[l][:, None, :]  # d out / d z_l: (b, C, w_l)
            flat = G.reshape(-1, G.shape[-1])
            out.append(matmul(flat.T, flat))
            if l > 0:
                G = jnp.einsum("bcw,wv->bcv", G, layers[l][0],
                               precision=PRECISION)  # d out / d h_l
        return tuple(out[::-1])

    return row_chunk_sum(sums, (X,), batch_size)


@functools.partial(jax.jit, static_argnames=("activation", "batch_size"))
def _named_gram_sums(layers, X, activation: str, batch_size: int):
    """``_gram_sums`` of a built-in activation, compiled once per shape."""
    return _gram_sums(layers, X, ACTIVATIONS[activation], batch_size)


def shared_layer_agops(
    layers: tuple[Layer, ...], X: ArrayLike, activation: str | Callable = "relu",
    batch_size: int = 512,
) -> list[jax.Array]:
    """``AGOP_l`` of the sub-network ``layers[l:]`` at the forward pass's ``h_l`` from ``X``,
    for every hidden layer ``l = 0 .. len(layers) - 2`` (module docstring).

    Args:
      layers: ``MLP.weights()``: ``(W (out, in), bias or None)``, input side first; the last
        is the classifier (biases do not enter a Jacobian).
      X: ``(n, d)`` network inputs.
      activation: a key of ``ACTIVATIONS`` or any elementwise function (a user's function
        is compiled at each call, never cached by identity).
      batch_size: samples whose ``G_l`` (``(batch, C, w_l)``) are held at once.

    Returns:
      One ``(in_l, in_l)`` AGOP per hidden layer, equal to ``layer_agops`` at the same
      inputs.
    """
    act = activation_function(activation)
    layers = tuple(layers)
    if len(layers) < 2:
        raise ValueError("the network needs at least one hidden layer and a classifier.")
    dtype = layers[0][0].dtype
    X = _checks.as_float_matrix("X", X, dtype=dtype)
    _checks.check_finite("X", X)
    if X.shape[1] != layers[0][0].shape[1]:
        raise ValueError(f"X has {X.shape[1]} features but the first layer takes "
                         f"{layers[0][0].shape[1]}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    batch = min(int(batch_size), X.shape[0])
    if isinstance(activation, str):
        S = _named_gram_sums(layers, X, activation, batch)
    else:
        S = jax.jit(functools.partial(_gram_sums, activation=act, batch_size=batch))(layers, X)
    n = X.shape[0]
    return [matmul(matmul(W.T, S_l), W) / n for (W, _), S_l in zip(layers[:-1], S, strict=True)]
