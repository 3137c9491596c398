"""A bandwidth sweep: seconds and compilations per value, for the shell's fit, predict and
the kernel AGOP (the bandwidth is data: one program per shape, whatever its value).

    python benchmarks/sweep.py [--n 2000] [--bandwidths 1 2 4 8 16]

Counts come from the jit caches of the programs each step runs (``_cache_size``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import block, machine, table

from dnc_jax import fit_kernel_predictor, kernel_agop


def programs():
    """The jitted programs a fit, a prediction and a kernel AGOP run."""
    import importlib

    agop = importlib.import_module("dnc_jax.gradient_outer_product")
    predictor = importlib.import_module("dnc_jax.predictor")
    cholesky = importlib.import_module("dnc_jax.solvers.cholesky")
    return {"kernel matrix": cholesky.train_kernel_matrix, "predict": predictor._predict,
            "AGOP": agop._kernel_agop}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--bandwidths", type=float, nargs="+", default=[1, 2, 4, 8, 16])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.n, 784)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True) / 10
    Y = np.where(np.eye(10)[rng.integers(0, 10, args.n)] > 0, 1.0, -1.0).astype(np.float32)
    Xt = X[:500] * 0.9
    rows, jitted = [], programs()
    for L in args.bandwidths:
        before = {k: f._cache_size() for k, f in jitted.items()}
        tic = time.perf_counter()
        pred = fit_kernel_predictor(X, Y, bandwidth=L, reg=1e-3, solver="cholesky")
        block((pred.predict(Xt), kernel_agop(pred, X, batch_size=500)))
        row = {"bandwidth": L, "seconds": time.perf_counter() - tic}
        row |= {f"{k} compiles": f._cache_size() - before[k] for k, f in jitted.items()}
        rows.append(row)
        print(table(rows[-1:], list(row)), flush=True)
    print()
    print(f"machine: {machine()}; n = {args.n}, d = 784, C = 10, 500 test rows")
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
