"""Deep RFM at scale: wall time per layer and per phase, against the machine's matmul ceiling.

    python benchmarks/deep_rfm_scale.py [--n 20000] [--depth 5] [--width 512]
        [--solver auto|cholesky|cg|nystrom] [--centers M] [--agop-samples S] [--max-shift K]

Data: ``mnist_shifted`` (the embedded MNIST training images and their shifts by up to
``--max-shift`` pixels; 100,000 images at 2, 1,156,000 at 8), standardised, with the
untouched 1,000-image test split. FLOPs counted per layer (d the layer's input width,
C = 10, D the width, s the AGOP points, k the solver's iterations, r the preconditioner
rank, m the centres), dominant terms only:

- cholesky: distances ``2 n^2 d``, factorisation ``n^3 / 3``, AGOP ``2 n^2 C d + 2 n C d^2``;
- cg: kernel rows ``2 n^2 d``, preconditioner ``2 n r d``, iterations ``k (2 n^2 C + 4 n r C)``,
  AGOP ``2 s n d + 2 s n C d + 2 s C d^2``;
- nystrom: ``K_nm`` ``2 n m d`` (once if held), iterations ``4 k n m C``, AGOP
  ``2 s m d + 2 s m C d + 2 s C d^2``;
plus the random map ``2 n d D`` and the projection ``2 n d^2``.
"""

from __future__ import annotations

import argparse
import time

from _common import machine, matmul_gflops, save, table

from dnc_jax import deep_rfm
from dnc_jax.data import load_dataset, prepare


def layer_flops(rec, args, n, C=10):
    d, D = rec.input_dim, args.width
    solve = rec.solve
    k = solve.iterations
    s = min(args.agop_samples or n, n)
    common = 2 * n * d * D + 2 * n * d * d
    if solve.solver == "cholesky":
        return common + 2 * n * n * d + n**3 / 3 + 2 * n * n * C * d + 2 * n * C * d * d
    if solve.solver == "cg":
        r = solve.rank
        return (common + 2 * n * n * d + 2 * n * r * d + k * (2 * n * n * C + 4 * n * r * C)
                + 2 * s * n * d + 2 * s * n * C * d + 2 * s * C * d * d)
    m = solve.rank
    return (common + 2 * n * m * d + 4 * k * n * m * C + 2 * s * m * d + 2 * s * m * C * d
            + 2 * s * C * d * d)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--solver", default="auto")
    parser.add_argument("--centers", type=int, default=None)
    parser.add_argument("--agop-samples", type=int, default=None)
    parser.add_argument("--max-shift", type=int, default=2)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    peak = matmul_gflops()
    tic = time.perf_counter()
    X, y = load_dataset("mnist_shifted", "train", args.n, max_shift=args.max_shift)
    Xt, yt = load_dataset("mnist_shifted", "test")
    data = prepare(X, y, Xt, yt)
    print(f"data: {args.n} x 784 in {time.perf_counter() - tic:.1f} s", flush=True)
    rows = []

    def on_layer(rec):
        flops = layer_flops(rec, args, args.n)
        ph = rec.phase_seconds
        rows.append({"layer": rec.layer, "d": rec.input_dim, "seconds": rec.seconds,
                     "kernel s": ph.kernel, "solve s": ph.solve, "agop s": ph.agop,
                     "map s": ph.map, "metrics s": ph.metrics,
                     "predict s": ph.predict, "iters": rec.solve.iterations,
                     "TFLOP": flops / 1e12, "GFLOP/s": flops / rec.seconds / 1e9,
                     "% of matmul": 100 * flops / rec.seconds / 1e9 / peak,
                     "nc1 in": rec.input.nc1, "nc1 out": rec.output.nc1,
                     "train acc": rec.train_accuracy, "test acc": rec.test_accuracy})
        print(table(rows[-1:], list(rows[-1])), flush=True)

    tic = time.perf_counter()
    deep_rfm(data.X_train, data.y_train, data.X_test, data.y_test, depth=args.depth,
             width=args.width, solver=args.solver, centers=args.centers,
             agop_samples=args.agop_samples, on_layer=on_layer)
    total = time.perf_counter() - tic
    print()
    print(f"machine: {machine()}; float32 matmul {peak:.1f} GFLOP/s")
    print(f"n={args.n}, depth {args.depth}, solver {args.solver}, centers {args.centers}, "
          f"agop samples {args.agop_samples}: {total:.1f} s in all (layer 0 includes compilation)")
    print(table(rows, list(rows[0])))
    name = "deep_rfm_scale" + (f"-{args.tag}" if args.tag else "")
    print("saved", save(name, {"machine": machine(), "matmul_gflops": peak, "args": vars(args),
                               "total_seconds": total, "rows": rows}))


if __name__ == "__main__":
    main()
