"""The public functions compose with JAX's transformations: ``jit``, ``vmap``, ``grad``,
and Flax NNX modules read at call time (issue 22)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from dnc_jax import agop


class _TwoLayer(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(5, 16, rngs=rngs)
        self.out = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


def _jacobian_agop(model, X):
    """Plain ``vmap(jacrev)`` of the module as it is now: ``mean J^T J``."""
    J = jax.vmap(jax.jacrev(model))(X)
    return jnp.einsum("ncd,nce->de", J, J) / X.shape[0]


def test_agop_of_an_nnx_module_follows_its_training(key):
    """After each of 3 optimiser steps the AGOP is that of the current weights, eagerly and
    under ``nnx.jit`` (a module cached by identity would keep its first weights)."""
    k_x, k_y = jax.random.split(key)
    X = jax.random.normal(k_x, (32, 5))
    Y = jax.random.normal(k_y, (32, 3))
    model = _TwoLayer(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        grads = nnx.grad(lambda m: jnp.mean((jax.vmap(m)(X) - Y) ** 2))(model)
        optimizer.update(model, grads)

    @nnx.jit
    def jitted(model, X):
        return agop(model, X)

    traces = []
    for _ in range(3):
        step(model, optimizer)
        ref = _jacobian_agop(model, X)
        for got in (agop(model, X), jitted(model, X)):
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6 * float(jnp.abs(ref).max()))
        traces.append(float(jnp.trace(ref)))
    assert len(set(traces)) == 3  # the weights did move


def test_agop_under_jit_equals_eager(rng):
    X = jnp.asarray(rng.standard_normal((20, 4)), jnp.float32)
    B = jnp.asarray(rng.standard_normal((3, 4)), jnp.float32)

    def f(x, B):
        return jnp.tanh(B @ x)

    eager = agop(f, X, B, batch_size=8, centered=True)
    jitted = jax.jit(lambda X, B: agop(f, X, B, batch_size=8, centered=True))(X, B)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-7)
