"""RFM fit: dnc_jax vs xRFM (PyTorch, CPU) with matched settings, in one run.

    python benchmarks/rfm.py [--sizes 5000 10000] [--iters 3] [--dataset mnist5k-shifted]

Settings shared by both: Laplace kernel, bandwidth 10, reg 1e-3, the same number of AGOP
iterations then a final fit, AGOP at every training point, divided by its largest entry,
kernel on ``x M^(1/2)`` (agop_power 0.5), Cholesky solves, {-1, +1} one-hot targets.

Data: MNIST-shaped (784 features, 10 classes). ``mnist5k-shifted`` is the embedded real
MNIST training split (4,000 images) and copies shifted by up to two pixels, shuffled, the
first n standardised; the test set is the embedded 1,000-image test split.
With tensorflow-datasets prepared, ``--dataset mnist`` takes the first n real images.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import machine, matmul_gflops, save, shifted_mnist, table, torch_matmul_gflops

from dnc_jax import RFM
from dnc_jax.data import load_dataset, one_hot_pm1, standardize

BANDWIDTH, REG = 10.0, 1e-3


def xrfm_fit(X, Y, Xv, Yv, iters, device):
    import torch
    from xrfm.rfm_src.recursive_feature_machine import RFM as XRFM

    model = XRFM(kernel="laplace", bandwidth=BANDWIDTH, iters=iters, agop_power=0.5,
                 device=device, verbose=False, tuning_metric="accuracy")
    tic = time.perf_counter()
    model.fit((torch.from_numpy(X), torch.from_numpy(Y)), (torch.from_numpy(Xv), torch.from_numpy(Yv)),
              iters=iters, method="lstsq", reg=REG, solver="cholesky", early_stop_rfm=False,
              return_best_params=False, total_points_to_sample=X.shape[0], M_batch_size=2000)
    if device != "cpu":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - tic
    with torch.no_grad():
        out = model.predict(torch.from_numpy(Xv).to(device)).cpu().numpy()
    return seconds, out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000])
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--dataset", default="mnist5k-shifted")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--torch-device", default="cpu")
    args = parser.parse_args()
    peak, torch_peak = matmul_gflops(), torch_matmul_gflops(device=args.torch_device)
    rows = []
    for n in args.sizes:
        if args.dataset == "mnist5k-shifted":
            X, y, Xt, yt = shifted_mnist(n)
        else:
            X, y = load_dataset(args.dataset, n=n, data_dir=args.data_dir)
            Xt, yt = load_dataset(args.dataset, "test", data_dir=args.data_dir)
        X, Xt = standardize(X, Xt)
        Y, Yt = one_hot_pm1(y, 10), one_hot_pm1(yt, 10)

        ours = RFM(kernel="laplace", bandwidth=BANDWIDTH, reg=REG, iters=args.iters,
                   agop_power=0.5, normalize="max", batch_size=2000)
        ours.fit(X[:500], y[:500])  # compile at another size is not enough: warm up fully
        ours.fit(X, y)
        tic = time.perf_counter()
        ours.fit(X, y)
        t_ours = time.perf_counter() - tic
        out_ours = ours.decision_function(Xt)
        acc_ours = float(np.mean(np.argmax(out_ours, 1) == yt))

        t_x, out_x = xrfm_fit(X, Y, Xt, Yt, args.iters, args.torch_device)
        acc_x = float(np.mean(np.argmax(out_x, 1) == yt))
        rows.append({
            "n": n, "iters": args.iters, "dnc_jax s": t_ours, "xrfm s": t_x,
            "speed-up": t_x / t_ours, "dnc_jax acc": acc_ours, "xrfm acc": acc_x,
            "same label %": 100 * float(np.mean(np.argmax(out_ours, 1) == np.argmax(out_x, 1))),
            "output rel diff": float(np.linalg.norm(out_ours - out_x) / np.linalg.norm(out_x)),
        })
        print(table(rows[-1:], list(rows[-1])), flush=True)
    print()
    print(f"machine: {machine()}")
    print(f"float32 matmul (best square): JAX {peak:.1f} GFLOP/s, PyTorch {torch_peak:.1f} GFLOP/s")
    print(table(rows, list(rows[0])))
    print("saved", save("rfm", {"machine": machine(), "matmul_gflops": peak,
                                "torch_matmul_gflops": torch_peak, "rows": rows}))


if __name__ == "__main__":
    main()
