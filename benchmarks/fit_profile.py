"""The RFM fit phase by phase: seconds, FLOPs and rate against the same run's matmul rate.

    python benchmarks/fit_profile.py [--sizes 10000 20000 40000] [--agop-samples 5000]

One fresh process per size (``--one N`` is the worker). Settings of ``benchmarks/scale.py``'s
``cg@5000``: ``mnist_shifted`` standardised, Laplace, bandwidth 10, ridge 1e-3, 2 AGOP
iterations then a final fit, the AGOP from 5,000 seeded rows, CG to 1e-6 with 500
landmarks, the kernel rows held. ``RFM.fit`` runs once, as a user runs it (compilation
included), with the library's phase functions wrapped by timers that wait for their
results (the preconditioner: its four steps); the compilation seconds (JAX's own compile
events) are counted apart and taken out of the phase they fell in. The held kernel rows
and the CG iterations share one compiled program, so the kernel rows are timed again
after the fit, alone (the same ``symmetric_kernel_matrix`` program on the same rows), and
the CG iterations are the solve less that. FLOPs per fit (n rows, d = 784, C = 10,
r = 500 landmarks, m AGOP rows after the even batch split, k CG iterations):

- transform ``Z = X T``: ``2 n d^2``;
- preconditioner: ``K(X, X_S)`` ``2 n r d``, ``F = K(X, X_S) K_SS^(-1/2)`` and ``F^T F`` ``4 n r^2``;
- kernel rows: the upper triangle's tiles, ``nb (nb + 1) / 2`` tiles of ``2 t^2 d``;
- CG: ``(k + 1 + warm)`` products of ``2 n^2 C + 4 n r C`` (the final residual, the warm start);
- AGOP: distances ``2 m n d``, gradients ``2 m n C d``, outer products ``2 m C d^2``;
- matrix power: a float64 eigendecomposition of ``d x d`` on the host (not counted).

"other" is the fit's wall time less the phases: checks, host transfers, Python.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import time

import jax
import numpy as np

BANDWIDTH, REG, ITERS, LANDMARKS, C = 10.0, 1e-3, 2, 500, 10
COMPILE_EVENTS = ("/jax/core/compile/backend_compile_duration",
                  "/jax/core/compile/jaxpr_trace_duration",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration")


class Phases:
    """Seconds and compile seconds per phase, appended per call."""

    def __init__(self):
        self.calls: list[tuple[str, float, float]] = []  # (phase, seconds, compile seconds)
        self.compile = 0.0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **_):
        if event in COMPILE_EVENTS:
            self.compile += duration

    def wrap(self, module, name: str, phase: str):
        fn = getattr(module, name)

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            compile0, tic = self.compile, time.perf_counter()
            out = jax.block_until_ready(fn(*args, **kwargs))
            self.calls.append((phase, time.perf_counter() - tic, self.compile - compile0))
            return out

        setattr(module, name, timed)


def profile(n: int, samples: int) -> dict:
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from _common import matmul_gflops
    from scale import data

    import dnc_jax.rfm as rfm
    import dnc_jax.solvers.cg as cg
    from dnc_jax import RFM
    from dnc_jax.blocks import even_batch
    from dnc_jax.kernels.value import SYMMETRIC_TILE, Kernel, symmetric_kernel_matrix

    X, y, Xt, yt = data(n)
    d = X.shape[1]
    phases = Phases()
    phases.wrap(rfm, "matmul", "transform")
    phases.wrap(cg, "cg_solve", "solve")
    phases.wrap(rfm, "kernel_agop", "AGOP")
    phases.wrap(rfm, "matrix_power", "matrix power")
    for name in ("train_kernel_matrix", "inverse_sqrt_psd", "landmark_factor", "nystrom_correction"):
        phases.wrap(cg, name, "preconditioner")  # what cg.solve does before cg_solve
    model = RFM(kernel="laplace", bandwidth=BANDWIDTH, reg=REG, iters=ITERS, agop_power=0.5,
                normalize="max", batch_size=2000, agop_samples=samples, solver="cg",
                precond_rank=LANDMARKS)
    compile0, tic = phases.compile, time.perf_counter()
    model.fit(X, y)
    total = time.perf_counter() - tic
    total_compile = phases.compile - compile0
    accuracy = float(np.mean(np.argmax(model.decision_function(Xt), 1) == yt))
    iterations = [h.solve.iterations for h in model.history_]
    # the kernel rows alone: the same program on the final fit's rows, after a warm-up
    Z = np.asarray(model.predictor_.centers)  # the final fit's rows, X T
    rows = jax.jit(lambda Z: symmetric_kernel_matrix(Kernel("laplace", BANDWIDTH), Z))
    jax.block_until_ready(rows(Z))
    rows_s = []
    for _ in range(2):
        tic = time.perf_counter()
        jax.block_until_ready(rows(Z))
        rows_s.append(time.perf_counter() - tic)
    kernel_rows_s = min(rows_s)
    del Z
    ceiling = matmul_gflops()

    nb = -(-n // SYMMETRIC_TILE)
    m = min(samples, n)
    m_padded = -(-m // even_batch(m, 2000)) * even_batch(m, 2000)
    fits = ITERS + 1
    r = LANDMARKS
    products = sum(k + 1 for k in iterations) + fits - 1  # each final residual; warm starts
    flops = {
        "transform": fits * 2 * n * d * d,
        "preconditioner": fits * (2 * n * r * d + 4 * n * r * r),
        "kernel rows": fits * nb * (nb + 1) / 2 * 2 * SYMMETRIC_TILE**2 * d,
        "CG iterations": products * (2 * n * n * C + 4 * n * r * C),
        "AGOP": ITERS * (2 * m_padded * n * d + 2 * m_padded * n * C * d + 2 * m_padded * C * d * d),
        "matrix power": None,
    }
    seconds = {key: 0.0 for key in flops}
    compiles = {key: 0.0 for key in flops}
    for phase, s, c in phases.calls:
        key = {"solve": "CG iterations"}.get(phase, phase)
        seconds[key] += s - c
        compiles[key] += c
    seconds["CG iterations"] -= fits * kernel_rows_s
    seconds["kernel rows"] = fits * kernel_rows_s
    seconds["compilation"] = total_compile
    seconds["other"] = total - sum(seconds.values())
    rows_out = []
    for key in [*flops, "compilation", "other"]:
        f = flops.get(key)
        rate = None if not f else f / seconds[key] / 1e9
        rows_out.append({"phase": key, "s": seconds[key], "share": seconds[key] / total,
                         "GFLOP": None if f is None else f / 1e9, "GFLOP/s": rate,
                         "rate / matmul": None if rate is None else rate / ceiling})
    done = sum(f for f in flops.values() if f)
    rows_out.append({"phase": "whole fit", "s": total, "share": 1.0, "GFLOP": done / 1e9,
                     "GFLOP/s": done / total / 1e9, "rate / matmul": done / total / 1e9 / ceiling})
    return {"n": n, "agop rows": m, "seconds": total, "test acc": accuracy,
            "cg iterations": iterations, "matmul GFLOP/s": ceiling, "phases": rows_out,
            "kernel rows alone s": rows_s}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 20000, 40000])
    parser.add_argument("--agop-samples", type=int, default=5000)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(profile(args.one, args.agop_samples)), flush=True)
        return
    from _common import machine, save, table

    results = []
    for n in args.sizes:
        proc = subprocess.run([sys.executable, __file__, "--one", str(n),
                               "--agop-samples", str(args.agop_samples)],
                              capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if not line:
            print(f"n = {n}: exit status {proc.returncode}\n{proc.stderr[-2000:]}")
            continue
        result = json.loads(line[0][7:])
        results.append(result)
        print(f"\nn = {n}: fit {result['seconds']:.1f} s, test accuracy {result['test acc']:.3f}, "
              f"CG iterations {result['cg iterations']}, matmul rate "
              f"{result['matmul GFLOP/s']:.1f} GFLOP/s")
        print(table(result["phases"], ["phase", "s", "share", "GFLOP", "GFLOP/s", "rate / matmul"]),
              flush=True)
    print(f"\nmachine: {machine()}")
    print("saved", save("fit_profile", {"machine": machine(), "results": results}))


if __name__ == "__main__":
    main()
