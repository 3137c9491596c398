"""What exact near distances cost: one Laplace fit + training AGOP (``fit_with_agop``, the
Cholesky path Deep RFM takes) and a kernel matrix, with the 8 nearest pairs per row
recomputed by direct difference (``kernels.NEAR_PAIRS = 8``, the default) and without
(``0``: the expansion, clamped at 0). Each setting runs in a fresh process.

    python benchmarks/near_pairs.py --sizes 4000 10000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def measure(n: int, near: int) -> dict:
    import jax.numpy as jnp
    from _common import best_time, shifted_mnist

    import dnc_jax.kernels as kernels
    from dnc_jax.rfm import fit_with_agop

    kernels.NEAR_PAIRS = near
    X, y, _, _ = shifted_mnist(n)
    X = jnp.asarray(X, jnp.float32)
    X = X / jnp.linalg.norm(X, axis=1, keepdims=True)
    Y = jnp.where(jnp.arange(10)[None, :] == jnp.asarray(y)[:, None], 1.0, -1.0)
    fit = best_time(lambda: fit_with_agop(X, Y, bandwidth=2.0, reg=1e-3)[1], repeats=2)
    K = best_time(lambda: kernels.laplace_kernel(X, X, 2.0), repeats=2)
    return {"n": n, "near pairs": near, "fit + AGOP s": fit, "kernel matrix s": K}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4000, 10000])
    parser.add_argument("--one", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one)))
        return
    from _common import machine, save, table

    rows = []
    for n in args.sizes:
        pair = []
        for near in (0, 8):
            out = subprocess.run([sys.executable, __file__, "--one", str(n), str(near)],
                                 capture_output=True, text=True, check=True)
            pair.append(json.loads(out.stdout.strip().splitlines()[-1]))
        for row in pair:
            row["fit ratio to 0"] = row["fit + AGOP s"] / pair[0]["fit + AGOP s"]
            row["kernel ratio to 0"] = row["kernel matrix s"] / pair[0]["kernel matrix s"]
        rows += pair
    print(f"machine: {machine()}")
    print(table(rows, list(rows[0])))
    print("saved", save("near-pairs", {"machine": machine(), "rows": rows}))


if __name__ == "__main__":
    main()
