"""Peak memory of the exact (Cholesky) path, in ``n x n`` matrices: the constants behind
``dnc_jax.solvers.CHOLESKY_PEAK_MATRICES``.

    python benchmarks/cholesky_memory.py [--n 8000 12000] [--path fit agop solve]
    python benchmarks/cholesky_memory.py --n 40000 --path solve   (a CPU: the blocked path)

One process per measurement: after the data is made, the resident-set high-water mark is
reset (``/proc/self/clear_refs``, Linux) and the path runs once; the growth of the peak
over the resident set before it, divided by ``n^2 * 4`` bytes, is the number of float32
``n x n`` buffers the path holds at its worst moment. ``fit``: ``fit_kernel_ridge(...,
solver="cholesky")``; ``agop``: ``fit_with_agop`` on one device with every row in the AGOP
(the kernel matrix and the gradient weights shared); ``solve``: ``solve_psd`` on a given
kernel matrix (the factorisation and the two triangular solves alone; past 33,000 rows on a
CPU, the blocked factorisation). Also printed: the call's seconds (compilation included).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np


def _status(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) * 1024.0
    raise RuntimeError(f"{field} not in /proc/self/status")


def one(path: str, n: int) -> tuple[float, float]:
    import time

    import jax.numpy as jnp

    from dnc_jax.data import one_hot_pm1
    from dnc_jax.rfm import fit_with_agop
    from dnc_jax.solvers import fit_kernel_ridge, solve_psd, train_kernel_matrix

    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.standard_normal((n, 64)).astype(np.float32))
    Y = jnp.asarray(one_hot_pm1(rng.integers(0, 10, n), 10))
    K = train_kernel_matrix(X, None, "laplace", 10.0, 2048).block_until_ready() if (
        path == "solve") else None
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the high-water mark to the current resident set
    before = _status("VmRSS")
    tic = time.perf_counter()
    if path == "fit":
        fit_kernel_ridge(X, Y, bandwidth=10.0, solver="cholesky")[0].coefs.block_until_ready()
    elif path == "agop":
        fit_with_agop(X, Y, bandwidth=10.0)[1].block_until_ready()
    else:
        solve_psd(K, Y, 1e-3).block_until_ready()
    return (_status("VmHWM") - before) / (n * n * 4), time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[8000, 12000])
    parser.add_argument("--path", nargs="+", default=["fit", "agop", "solve"])
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        matrices, seconds = one(args.one[0], int(args.one[1]))
        print(f"RESULT {matrices:.3f}  {seconds:.1f}")
        return
    print("path   n       n x n matrices at the peak (beyond those held before)  seconds")
    for path in args.path:
        for n in args.n:
            out = subprocess.run([sys.executable, __file__, "--one", path, str(n)],
                                 capture_output=True, text=True, check=True).stdout
            value = [line for line in out.splitlines() if line.startswith("RESULT")][0][7:]
            print(f"{path:<6} {n:<7} {value}", flush=True)


if __name__ == "__main__":
    main()
