"""Situations where a plausible wrong number once came back without an error: each is a
clear error, a checkify error or the documented NaN now, or the right answer.

One test per situation (TESTING.md lists them); the expected values are computed here,
independently of the code under test."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import dnc_jax as dj
from dnc_jax import gradient_outer_product as gop


def _jacobian_agop64(f, X):
    """``mean J^T J`` from ``vmap(jacrev(f))``, summed in float64."""
    J = np.asarray(jax.vmap(jax.jacrev(f))(jnp.asarray(X)), np.float64)
    J = J.reshape(J.shape[0], -1, J.shape[-1])
    return np.einsum("ncd,nce->de", J, J) / J.shape[0]


# -------------------------------------------------------------- closures read at call time


class _SmallCNN(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.head = nnx.Linear(8 * 8 * 4, 3, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.conv(x))
        return self.head(h.reshape(*h.shape[:-3], -1))


def test_agop_of_a_closure_follows_the_state_it_closes_over(rng):
    """``agop(lambda x: lin(x), X)`` after the weights change is the new AGOP (it once
    kept the first call's), and so is a closure over a plain array."""
    X = rng.standard_normal((30, 5)).astype(np.float32)
    lin = nnx.Linear(5, 2, rngs=nnx.Rngs(0))

    def f(x):
        return lin(x)

    first = dj.agop(f, X)
    lin.kernel[...] = lin.kernel[...] * 10.0
    np.testing.assert_allclose(dj.agop(f, X), _jacobian_agop64(f, X), rtol=1e-5)
    np.testing.assert_allclose(dj.agop(f, X), 100.0 * np.asarray(first), rtol=1e-5)
    B = jnp.asarray(rng.standard_normal((3, 5)), jnp.float32)
    g = lambda x: jnp.tanh(B @ x)  # noqa: E731
    before = dj.agop(g, X)
    B = B * 3.0  # the name g reads is rebound
    np.testing.assert_allclose(dj.agop(g, X), _jacobian_agop64(g, X), rtol=1e-5, atol=1e-7)
    assert not np.allclose(before, dj.agop(g, X))


def test_agop_of_a_cnn_wrapper_follows_training_and_compiles_once():
    """A closure reshaping flat rows for a CNN: after each of 3 optimiser steps its AGOP
    equals ``vmap(jacrev)`` of the same closure, and the AGOP program is compiled once."""
    cnn = _SmallCNN(nnx.Rngs(0))
    X = np.random.default_rng(1).standard_normal((16, 64)).astype(np.float32)
    Y = jax.nn.one_hot(np.arange(16) % 3, 3)
    optimizer = nnx.Optimizer(cnn, optax.sgd(0.5), wrt=nnx.Param)

    @nnx.jit
    def step(cnn, optimizer):
        loss = lambda m: jnp.mean((m(X.reshape(-1, 8, 8, 1)) - Y) ** 2)  # noqa: E731
        optimizer.update(cnn, nnx.grad(loss)(cnn))

    f = lambda x: cnn(x.reshape(8, 8, 1))  # noqa: E731
    gop._agop_autodiff.clear_cache()
    traces = []
    for _ in range(3):
        step(cnn, optimizer)
        want = _jacobian_agop64(f, X)
        np.testing.assert_allclose(dj.agop(f, X), want, rtol=1e-4,
                                   atol=1e-5 * np.abs(want).max())
        traces.append(np.trace(want))
    assert len(set(traces)) == 3  # the weights did move
    assert gop._agop_autodiff._cache_size() == 1


def test_agop_compiles_once_for_a_module_and_a_pure_function(rng):
    """New weights are new data: a module, a closure over it and a module-level function
    with its parameters as an argument each compile once over three weight values."""
    X = rng.standard_normal((10, 5)).astype(np.float32)
    lin = nnx.Linear(5, 2, rngs=nnx.Rngs(0))

    def pure(x, W):
        return jnp.tanh(W @ x)

    for fn, args in ((lin, ()), (lambda x: lin(x), ()), (pure, (lin.kernel[...].T,))):
        gop._agop_autodiff.clear_cache()
        for scale in (1.0, 2.0, 3.0):
            lin.kernel[...] = lin.kernel[...] * scale
            dj.agop(fn, X, *args)
        assert gop._agop_autodiff._cache_size() == 1


def test_agop_keeps_programs_apart_that_differ_only_in_a_number(rng):
    """Closed-over Python numbers are part of the program: a different number is a
    different answer, never a cached one."""
    X = rng.standard_normal((6, 3)).astype(np.float32)
    for c in (1.0, 2.0):
        np.testing.assert_allclose(dj.agop(lambda x: c * x, X), c * c * np.eye(3), rtol=1e-6)
