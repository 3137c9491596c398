"""AGOP of one Laplace kernel predictor: closed form vs autodiff vs xRFM (PyTorch), in one run.

    python benchmarks/agop.py [--sizes 2000 5000 10000] [--skip-autodiff-above 5000]

The predictor is fitted once per size (n centres, d = 784, C = 10, float32, bandwidth 10,
reg 1e-3) and its AGOP taken at the n training points by each route. FLOPs of the closed
form: distances 2 n^2 d, gradients 2 n^2 C d (+ 2 n^2 C), outer products 2 n C d^2.
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np
from _common import best_time, machine, matmul_gflops, save, table, torch_matmul_gflops

from dnc_jax import agop, fit_kernel_predictor, kernel_agop

D, C, BANDWIDTH, REG = 784, 10, 10.0, 1e-3


def closed_form_flops(n: int, m: int, d: int = D, c: int = C) -> float:
    return 2 * m * n * d + 2 * m * n * c * d + 2 * m * n * c + 2 * m * c * d * d


def xrfm_agop(X, coefs, batch, device="cpu"):
    import torch
    from xrfm.rfm_src.kernels import LaplaceKernel

    kernel = LaplaceKernel(bandwidth=BANDWIDTH, exponent=1.0)
    Xt = torch.tensor(np.asarray(X), device=device)
    coef_t = torch.tensor(np.asarray(coefs), device=device).T.contiguous()

    def run():
        total = torch.zeros(D, D, device=device)
        with torch.no_grad():
            for start in range(0, Xt.shape[0], batch):
                total += kernel.get_agop(x=Xt, z=Xt[start:start + batch], coefs=coef_t)
        if device != "cpu":
            torch.cuda.synchronize()
        return total / Xt.shape[0]

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000])
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--skip-autodiff-above", type=int, default=10000)
    parser.add_argument("--no-xrfm", action="store_true")
    parser.add_argument("--torch-device", default="cpu")
    args = parser.parse_args()

    peak = matmul_gflops()
    torch_peak = None if args.no_xrfm else torch_matmul_gflops(device=args.torch_device)
    rows = []
    rng = np.random.default_rng(0)
    for n in args.sizes:
        X = rng.standard_normal((n, D)).astype(np.float32)
        X /= np.linalg.norm(X, axis=1, keepdims=True) / 10  # MNIST-like norms (~10)
        Y = np.where(np.eye(C)[rng.integers(0, C, n)] > 0, 1.0, -1.0).astype(np.float32)
        pred = fit_kernel_predictor(X, Y, kernel="laplace", bandwidth=BANDWIDTH, reg=REG)
        ref = kernel_agop(pred, X, batch_size=args.batch)
        t_closed = best_time(lambda p=pred, X=X: kernel_agop(p, X, batch_size=args.batch))
        flops = closed_form_flops(n, n)
        row = {"n": n, "closed s": t_closed, "closed GFLOP/s": flops / t_closed / 1e9,
               "% of matmul": 100 * flops / t_closed / 1e9 / peak}
        if n <= args.skip_autodiff_above:
            t_auto = best_time(lambda p=pred, X=X: agop(p.predict_one, X, batch_size=256),
                               repeats=1)
            auto = agop(pred.predict_one, X, batch_size=256)
            row["autodiff s"] = t_auto
            row["autodiff/closed"] = t_auto / t_closed
            row["autodiff rel err"] = float(jnp.linalg.norm(auto - ref) / jnp.linalg.norm(ref))
        if not args.no_xrfm:
            run = xrfm_agop(X, pred.coefs, args.batch, args.torch_device)
            t_x = best_time(run, repeats=1)
            theirs = run().cpu().numpy()
            row["xrfm s"] = t_x
            row["xrfm/closed"] = t_x / t_closed
            row["xrfm rel err"] = float(np.linalg.norm(theirs - np.asarray(ref))
                                        / np.linalg.norm(np.asarray(ref)))
        rows.append(row)
        print(table(rows[-1:], list(rows[-1])), flush=True)
    cols = ["n", "closed s", "closed GFLOP/s", "% of matmul", "autodiff s", "autodiff/closed",
            "autodiff rel err", "xrfm s", "xrfm/closed", "xrfm rel err"]
    print()
    print(f"machine: {machine()}")
    print(f"float32 matmul (best square): JAX {peak:.1f} GFLOP/s"
          + ("" if torch_peak is None else f", PyTorch {torch_peak:.1f} GFLOP/s"))
    print(table(rows, cols))
    print("saved", save("agop", {"machine": machine(), "matmul_gflops": peak,
                                 "torch_matmul_gflops": torch_peak, "rows": rows}))


if __name__ == "__main__":
    main()
