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
CPU, the blocked factorisation); ``auto``: ``fit_with_agop`` with ``solver="auto"``, which
takes Cholesky only where ``CHOLESKY_AGOP_PEAK_MATRICES`` buffers fit the free memory (the
solver it chose is printed). Also printed: the call's seconds (compilation included).

On an accelerator (``jax.default_backend() != "cpu"``) the peak is the device's own
``memory_stats()["peak_bytes_in_use"]`` after the call less its ``bytes_in_use`` before it
(each measurement is a fresh process, so the peak before is only the data's), and
``bytes_limit`` is printed beside it:

    python benchmarks/cholesky_memory.py --n 20000 40000 60000 --path fit agop auto
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


def one(path: str, n: int) -> tuple[float, float, str]:
    import time

    import jax
    import jax.numpy as jnp

    from dnc_jax.data import one_hot_pm1
    from dnc_jax.kernels import Kernel
    from dnc_jax.rfm import fit_with_agop
    from dnc_jax.solvers import SolverOptions, fit_kernel_ridge, solve_psd, train_kernel_matrix

    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.standard_normal((n, 64)).astype(np.float32))
    Y = jnp.asarray(one_hot_pm1(rng.integers(0, 10, n), 10))
    K = train_kernel_matrix(X, Kernel("laplace", 10.0), 2048).block_until_ready() if (
        path == "solve") else None
    device = jax.local_devices()[0]
    on_host = jax.default_backend() == "cpu"
    if on_host:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the high-water mark to the current resident set
        before = _status("VmRSS")
    else:
        before = device.memory_stats()["bytes_in_use"]
    tic = time.perf_counter()
    note = ""
    if path == "fit":
        fit_kernel_ridge(X, Y, bandwidth=10.0, solver="cholesky")[0].coefs.block_until_ready()
    elif path in ("agop", "auto"):
        options = SolverOptions("auto" if path == "auto" else "cholesky")
        _, M, info = fit_with_agop(X, Y, bandwidth=10.0, solver=options)
        M.block_until_ready()
        note = f"solver={info.solver}"
    else:
        solve_psd(K, Y, 1e-3).block_until_ready()
    seconds = time.perf_counter() - tic
    if on_host:
        peak = _status("VmHWM") - before
    else:
        stats = device.memory_stats()
        peak = stats["peak_bytes_in_use"] - before
        note += f" bytes_limit={stats['bytes_limit'] / 2**30:.1f}GiB peak={peak / 2**30:.1f}GiB"
    return peak / (n * n * 4), seconds, note.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[8000, 12000])
    parser.add_argument("--path", nargs="+", default=["fit", "agop", "solve"],
                        choices=["fit", "agop", "solve", "auto"])
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        matrices, seconds, note = one(args.one[0], int(args.one[1]))
        print(f"RESULT {matrices:.3f}  {seconds:.1f}  {note}")
        return
    print("path   n       n x n matrices at the peak (beyond those held before)  seconds")
    for path in args.path:
        for n in args.n:
            run = subprocess.run([sys.executable, __file__, "--one", path, str(n)],
                                 capture_output=True, text=True)
            found = [line for line in run.stdout.splitlines() if line.startswith("RESULT")]
            errors = [line for line in run.stderr.splitlines() if "Error: " in line]
            value = found[0][7:] if found else (
                f"failed (exit {run.returncode}): {(errors or run.stderr.splitlines() or [''])[-1]}")
            print(f"{path:<6} {n:<7} {value}", flush=True)


if __name__ == "__main__":
    main()
