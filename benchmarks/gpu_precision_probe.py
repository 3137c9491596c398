"""Probe: is a full-float32 (HIGHEST) matmul slow on this GPU when it sits inside a loop?

    python benchmarks/gpu_precision_probe.py
"""
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


n = 8192
x = jax.random.normal(jax.random.key(0), (n, n))
for prec in ("HIGHEST", "DEFAULT"):
    P = getattr(jax.lax.Precision, prec)
    one = jax.jit(lambda a: jnp.matmul(a, a, precision=P))
    loop = jax.jit(lambda a: jax.lax.fori_loop(0, 4, lambda i, c: c + jnp.matmul(a, a, precision=P) * 1e-9, a))
    lmap = jax.jit(lambda a: jax.lax.map(lambda b: jnp.matmul(b, a, precision=P), a.reshape(4, n // 4, n)))
    flop = 2 * n**3
    print(prec, "plain TFLOP/s %.1f" % (flop / timed(one, x) / 1e12),
          "fori_loop %.1f" % (4 * flop / timed(loop, x) / 1e12),
          "lax.map %.1f" % (flop / timed(lmap, x) / 1e12), flush=True)
X = jax.random.normal(jax.random.key(1), (20000, 784))
for bs in (None, 4096):
    f = jax.jit(lambda a: kernel_matrix(a, a, "laplace", 2.0, block_size=bs))
    s = timed(f, X, reps=2)
    print("kernel_matrix 20000^2 block", bs, "%.3f s, %.1f TFLOP/s" % (s, 2 * 20000**2 * 784 / s / 1e12), flush=True)
H = np.asarray(jax.random.normal(jax.random.key(2), (50000, 784)))
y = np.arange(50000) % 10
rows = as_rows(H, data_mesh())
for k in range(2):
    t = time.perf_counter(); collapse_metrics(rows, y); print("collapse Rows 50000x784 %.3f s" % (time.perf_counter() - t), flush=True)
    t = time.perf_counter(); collapse_metrics(H, y); print("collapse numpy 50000x784 %.3f s" % (time.perf_counter() - t), flush=True)
