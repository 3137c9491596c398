"""Deep RFM at scale: wall time per layer against the machine's matmul ceiling.

    python benchmarks/deep_rfm_scale.py [--n 20000] [--depth 5] [--width 512]

Data: the shifted-MNIST set of ``_common.shifted_mnist`` (real embedded MNIST images and
their shifts by up to 2 pixels), standardised. FLOPs per layer (d the layer's input width):
distances 2 n^2 d, Cholesky n^3 / 3, AGOP gradients 2 n^2 C d and outer products
2 n C d^2, the random map 2 n d D (metrics and predictions left out: they are small).
"""

from __future__ import annotations

import argparse
import time

from _common import machine, matmul_gflops, save, shifted_mnist, table

from dnc_jax import deep_rfm
from dnc_jax.data import prepare


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--width", type=int, default=512)
    args = parser.parse_args()
    peak = matmul_gflops()
    X, y, Xt, yt = shifted_mnist(args.n)
    data = prepare(X, y, Xt, yt)
    C = data.num_classes
    rows = []

    def on_layer(rec):
        n, d, D = args.n, rec["input_dim"], args.width
        flops = 2 * n * n * d + n**3 / 3 + 2 * n * n * C * d + 2 * n * C * d * d + 2 * n * d * D
        rows.append({"layer": rec["layer"], "d": d, "seconds": rec["seconds"],
                     "GFLOP/s": flops / rec["seconds"] / 1e9,
                     "% of matmul": 100 * flops / rec["seconds"] / 1e9 / peak,
                     "nc1 in": rec["input"]["nc1"], "nc1 out": rec["output"]["nc1"],
                     "train acc": rec["train_accuracy"], "test acc": rec["test_accuracy"]})
        print(table(rows[-1:], list(rows[-1])), flush=True)

    tic = time.perf_counter()
    deep_rfm(data.X_train, data.y_train, data.X_test, data.y_test, depth=args.depth,
             width=args.width, on_layer=on_layer)
    total = time.perf_counter() - tic
    print()
    print(f"machine: {machine()}; float32 matmul {peak:.1f} GFLOP/s")
    print(f"n={args.n}, depth {args.depth}: {total:.1f} s in all (first layer includes compilation)")
    print(table(rows, list(rows[0])))
    print("saved", save("deep_rfm_scale", {"machine": machine(), "matmul_gflops": peak,
                                           "n": args.n, "total_seconds": total, "rows": rows}))


if __name__ == "__main__":
    main()
