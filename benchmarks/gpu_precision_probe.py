"""Probe: is a full-float32 (HIGHEST) matmul slow on this GPU when it sits inside a loop?

    python benchmarks/gpu_precision_probe.py
"""
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from dnc_jax import collapse_metrics, data_mesh
from dnc_jax.kernels import kernel_matrix
from dnc_jax.sharding import as_rows


def timed(f, *a, reps=3):
    jax.block_until_ready(f(*a))
    t = time.perf_counter()
    for _ in range(reps):
        jax.block_until_ready(f(*a))
    return (time.perf_counter() - t) / reps


def products(precision):
    """One product, four inside a ``fori_loop``, and one split by ``lax.map``."""

    def one(a):
        return jnp.matmul(a, a, precision=precision)

    def loop(a):
        return jax.lax.fori_loop(0, 4, lambda i, c: c + one(a) * 1e-9, a)

    def mapped(a):
        blocks = a.reshape(4, a.shape[0] // 4, a.shape[1])
        return jax.lax.map(lambda b: jnp.matmul(b, a, precision=precision), blocks)

    return jax.jit(one), jax.jit(loop), jax.jit(mapped)


def main():
    n = 8192
    x = jax.random.normal(jax.random.key(0), (n, n))
    flop = 2 * n**3
    for name in ("HIGHEST", "DEFAULT"):
        one, loop, mapped = products(getattr(jax.lax.Precision, name))
        print(f"{name} plain TFLOP/s {flop / timed(one, x) / 1e12:.1f}",
              f"fori_loop {4 * flop / timed(loop, x) / 1e12:.1f}",
              f"lax.map {flop / timed(mapped, x) / 1e12:.1f}", flush=True)
    X = jax.random.normal(jax.random.key(1), (20000, 784))
    for block in (None, 4096):
        kernel = jax.jit(functools.partial(kernel_matrix, kernel="laplace", bandwidth=2.0,
                                           block_size=block), static_argnums=())
        seconds = timed(lambda a, k=kernel: k(a, a), X, reps=2)
        print(f"kernel_matrix 20000^2 block {block}: {seconds:.3f} s, "
              f"{2 * 20000**2 * 784 / seconds / 1e12:.1f} TFLOP/s", flush=True)
    H = np.asarray(jax.random.normal(jax.random.key(2), (50000, 784)))
    y = np.arange(50000) % 10
    rows = as_rows(H, data_mesh())
    for _ in range(2):  # first call compiles, second is warm
        for label, features in (("Rows", rows), ("numpy", H)):
            tic = time.perf_counter()
            collapse_metrics(features, y)
            print(f"collapse {label} 50000x784 {time.perf_counter() - tic:.3f} s", flush=True)


if __name__ == "__main__":
    main()
