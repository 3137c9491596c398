"""What batch invariance costs: padded fixed-size blocks against unpadded batches, same run.

Predictions (``KernelPredictor.predict``, blocks of ``predict_block()`` rows, the last one
padded) against one unpadded product over the whole batch (the previous behaviour for
batches up to 4,096 rows); the closed-form AGOP with its last batch padded against a
smaller last batch. n = 5,000 centres, d = 784, C = 10, float32.

    python benchmarks/padding.py [--n 5000] [--batches 1 7 1000 10000] [--agop-batch 2048]
"""

from __future__ import annotations

import argparse
import functools

import jax
import numpy as np
from _common import best_time, machine, save, table

from dnc_jax import fit_kernel_predictor
from dnc_jax.gradient_outer_product import coef_outer_centers, finish_agop, jacobian_sums, kernel_gradients
from dnc_jax.predictor import block_outputs, predict_block

D, C = 784, 10


@jax.jit
def unpadded_predict(pred, X):
    return block_outputs(pred.kernel, X, pred.centers, pred.coefs)


@functools.partial(jax.jit, static_argnames=("batch", "pad"))
def agop(pred, X, batch, pad):
    cc = coef_outer_centers(pred.coefs, pred.centers)

    def jac(Xb):
        return kernel_gradients(Xb, pred.kernel, pred.centers, pred.coefs, cc)

    outer, total = jacobian_sums(jac, (X,), batch, False, False, pad=pad)
    return finish_agop(outer, total, X.shape[0], False, False, None)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 7, 1000, 10000])
    parser.add_argument("--agop-batch", type=int, default=2048)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.n, D)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True) / 10
    Y = np.where(np.eye(C)[rng.integers(0, C, args.n)] > 0, 1.0, -1.0).astype(np.float32)
    pred = fit_kernel_predictor(X, Y, bandwidth=10.0, reg=1e-3)
    rows = []
    for m in args.batches:
        T = rng.standard_normal((m, D)).astype(np.float32)
        padded = best_time(lambda T=T: pred.predict(T))
        plain = best_time(lambda T=T: unpadded_predict(pred, T))
        rows.append({"what": f"predict {m} rows", "padded s": padded, "unpadded s": plain,
                     "padded/unpadded": padded / plain})
        print(table(rows[-1:], list(rows[-1])), flush=True)
    b = args.agop_batch
    padded = best_time(lambda: agop(pred, X, b, True))
    plain = best_time(lambda: agop(pred, X, b, False))
    rows.append({"what": f"AGOP {args.n} rows, batch {b}", "padded s": padded,
                 "unpadded s": plain, "padded/unpadded": padded / plain})
    print()
    print(f"machine: {machine()}; prediction block {predict_block()} rows")
    print(table(rows, ["what", "padded s", "unpadded s", "padded/unpadded"]))
    print("saved", save("padding", {"machine": machine(), "block": predict_block(), "rows": rows}))


if __name__ == "__main__":
    main()
