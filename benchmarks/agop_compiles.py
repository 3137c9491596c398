"""Compilations and seconds per call of ``agop`` while a model trains.

    python benchmarks/agop_compiles.py [--steps 5] [--n 256]

A small CNN (flat rows as 8 x 8 images; conv 3x3, 8 channels; a dense head to 10) takes
``--steps`` SGD steps; after each, the AGOP is taken three ways: of the module itself,
of a closure over it (a new ``lambda x: cnn(x)`` at each call, and one closure defined
once and reused), and of a module-level function of the row and the model's state
passed as an argument (``nnx.split``).
Each call is checked against ``vmap(jacrev)`` of the same function, and the table gives
the compiled programs of ``agop`` after all calls (``_agop_autodiff._cache_size()``), the
first call's seconds (trace, compile, run) and the mean of the later calls' (trace and
run: ``agop`` traces its function at every call, so that what it closes over is read then).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import machine, table
from flax import nnx

from dnc_jax import agop
from dnc_jax import gradient_outer_product as gop


class CNN(nnx.Module):
    """Flat rows of 64 pixels as 8 x 8 images: conv 3x3 (8 channels), ReLU, dense head."""

    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 8, (3, 3), rngs=rngs)
        self.head = nnx.Linear(8 * 8 * 8, 10, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.conv(x.reshape(*x.shape[:-1], 8, 8, 1)))
        return self.head(h.reshape(*h.shape[:-3], -1))


GRAPHDEF = nnx.split(CNN(nnx.Rngs(0)))[0]


def pure(x, state):
    """A module-level function of one row and the model's state."""
    return nnx.merge(GRAPHDEF, state)(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--n", type=int, default=256)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.n, 64)).astype(np.float32)
    Y = jax.nn.one_hot(np.arange(args.n) % 10, 10)
    rows = []
    for how in ("module", "new closure per call", "one closure reused", "pure function"):
        cnn = CNN(nnx.Rngs(0))
        optimizer = nnx.Optimizer(cnn, optax.sgd(0.1), wrt=nnx.Param)

        @nnx.jit
        def step(cnn, optimizer):
            loss = lambda m: jnp.mean((m(X) - Y) ** 2)  # noqa: E731
            optimizer.update(cnn, nnx.grad(loss)(cnn))

        def reused(x, cnn=cnn):
            return cnn(x)

        def call(cnn=cnn, how=how, reused=reused):
            if how == "module":
                return agop(cnn, X)
            if how == "new closure per call":
                return agop(lambda x: cnn(x), X)
            if how == "one closure reused":
                return agop(reused, X)
            return agop(pure, X, nnx.split(cnn)[1])

        gop._agop_autodiff.clear_cache()
        seconds, worst = [], 0.0
        for _ in range(args.steps):
            step(cnn, optimizer)
            tic = time.perf_counter()
            A = np.asarray(call())
            seconds.append(time.perf_counter() - tic)
            J = np.asarray(jax.vmap(jax.jacrev(cnn))(X), np.float64)
            ref = np.einsum("ncd,nce->de", J, J) / args.n
            worst = max(worst, float(np.abs(A - ref).max() / np.abs(ref).max()))
        rows.append({"f": how, "calls": args.steps,
                     "programs compiled": gop._agop_autodiff._cache_size(),
                     "first call s": seconds[0], "later calls s": float(np.mean(seconds[1:])),
                     "max rel. err.": worst})
    print(machine())
    print(table(rows, ["f", "calls", "programs compiled", "first call s", "later calls s",
                       "max rel. err."]))


if __name__ == "__main__":
    main()
