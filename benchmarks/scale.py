"""RFM fit at scale: dnc_jax's solvers against xRFM, one fresh process per solver and size.

    python benchmarks/scale.py [--sizes 10000 20000] [--methods cholesky cg nystrom5000 xrfm]
    python benchmarks/scale.py --sizes 10000 20000 --methods cg cg@5000 cg@1000 cg@auto xrfm
    python benchmarks/scale.py --sizes 10000 20000 40000 --methods cg@5000 xrfm@5000 xrfm

Settings shared by all: the ``mnist_shifted`` training images (d = 784, C = 10),
standardised with the embedded 1,000-image test split; Laplace kernel, bandwidth 10,
ridge 1e-3, 2 AGOP iterations then a final fit, each AGOP from 20,000 seeded training
points (all when n is smaller), divided by its largest entry, kernel on ``x M^(1/2)``.
Methods: ``cholesky``, ``cg`` (tol 1e-6, 500 landmarks), ``nystromM`` (M centres), and
``xrfm`` (``xrfm.RFM.fit``, Cholesky, ``total_points_to_sample=20000``, its default);
``xrfm@5000`` gives xRFM the same 5,000 AGOP rows as ``cg@5000``. A dnc_jax method
may name its AGOP sample after ``@``: ``cg@5000`` (5,000 seeded rows), ``cg@auto``
(``agop_samples="auto"``: doubling rounds from 1,000 rows until the squared distances the
next kernel computes, on 500 fixed pairs of rows, move less than 1e-2 in rms; the rows used
per iteration are reported); ``cg-cold`` starts every CG solve from zero instead of the
previous fit's coefficients (``fit_rfm(warm_start=False)``). ``--device cuda`` runs xRFM
on the GPU (JAX takes its default device) and adds each method's peak device memory.
Seconds are the whole ``fit`` in a fresh process (JAX compilation included: nothing is warmed up); peak
memory is the process's maximum resident set size (imports and data included). The growth
exponent of time with n is the least-squares slope of log(seconds) on log(n).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

BANDWIDTH, REG, ITERS, AGOP_POINTS = 10.0, 1e-3, 2, 20_000


def data(n: int):
    from dnc_jax.data import load_dataset, standardize

    X, y = load_dataset("mnist_shifted", "train", n)
    Xt, yt = load_dataset("mnist_shifted", "test")
    X, Xt = standardize(X, Xt)
    return X.astype(np.float32), y, Xt.astype(np.float32), yt


MEMORY_BUDGET = None  # bytes of kernel rows CG may hold (None: the library's default)
DEVICE = "cpu"  # where xRFM runs ("cuda" on a GPU machine); JAX takes its default device


def run_ours(method: str, X, y, Xt):
    import functools

    from dnc_jax import RFM, estimators

    solver, _, samples = method.partition("@")
    if solver.endswith("-cold"):  # every CG solve from zero (fit_rfm's warm_start=False)
        solver = solver[:-len("-cold")]
        estimators.fit_rfm = functools.partial(estimators.fit_rfm, warm_start=False)
    options = {"solver": "cholesky"} if solver == "cholesky" else (
        {"solver": "cg"} if solver == "cg" else {"centers": int(solver[len("nystrom"):])})
    agop_samples = AGOP_POINTS if not samples else (samples if samples == "auto" else int(samples))
    model = RFM(kernel="laplace", bandwidth=BANDWIDTH, reg=REG, iters=ITERS, agop_power=0.5,
                normalize="max", batch_size=2000, agop_samples=agop_samples,
                memory_budget=MEMORY_BUDGET, **options)
    tic = time.perf_counter()
    model.fit(X, y)
    seconds = time.perf_counter() - tic
    solves = [h.solve for h in model.history_]
    rows = [h.solve.agop_rows for h in model.history_]
    return seconds, model.decision_function(Xt), solves, rows


def xrfm_points(method: str) -> int:
    """xRFM's ``total_points_to_sample``: ``xrfm`` its default budget (20,000 rows),
    ``xrfm@5000`` the same 5,000 rows as ``cg@5000``."""
    _, _, samples = method.partition("@")
    return int(samples) if samples else AGOP_POINTS


def run_xrfm(method: str, X, y, Xt):
    import torch
    from xrfm.rfm_src.recursive_feature_machine import RFM as XRFM

    from dnc_jax.data import one_hot_pm1

    torch.set_num_threads(torch.get_num_threads())
    Y = one_hot_pm1(y, 10)
    model = XRFM(kernel="laplace", bandwidth=BANDWIDTH, iters=ITERS, agop_power=0.5,
                 device=DEVICE, verbose=False, tuning_metric="accuracy")
    tic = time.perf_counter()
    model.fit((torch.from_numpy(X), torch.from_numpy(Y)), (torch.from_numpy(Xt[:10]),
              torch.from_numpy(one_hot_pm1(np.zeros(10, np.int64), 10))),
              iters=ITERS, method="lstsq", reg=REG, solver="cholesky", early_stop_rfm=False,
              return_best_params=False, total_points_to_sample=xrfm_points(method), M_batch_size=2000)
    if DEVICE != "cpu":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - tic
    with torch.no_grad():
        out = model.predict(torch.from_numpy(Xt).to(DEVICE)).cpu().numpy()
    return seconds, out, None, None


def one(method: str, n: int) -> dict:
    X, y, Xt, yt = data(n)
    if method.partition("@")[0] == "xrfm":
        seconds, out, solves, rows = run_xrfm(method, X, y, Xt)
    else:
        seconds, out, solves, rows = run_ours(method, X, y, Xt)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    row = {"method": method, "n": n, "seconds": seconds, "peak GiB": peak_gib}
    if DEVICE != "cpu":  # the peak on the card: torch's allocator for xRFM, XLA's for ours
        if method == "xrfm":
            import torch

            row["peak device GiB"] = torch.cuda.max_memory_allocated() / 2**30
        else:
            import jax

            stats = jax.local_devices()[0].memory_stats() or {}
            row["peak device GiB"] = stats.get("peak_bytes_in_use", float("nan")) / 2**30
    return {**row,
            "test acc": float(np.mean(np.argmax(out, 1) == yt)),
            "iters": None if solves is None else [s.iterations for s in solves],
            "agop rows": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 20000])
    parser.add_argument("--methods", nargs="+",
                        default=["cholesky", "cg", "nystrom5000", "nystrom10000", "xrfm"])
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=int, default=1800)
    parser.add_argument("--memory-budget-gib", type=float, default=None,
                        help="kernel rows CG may hold (default: the library's, half the "
                             "free memory)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="xRFM's torch device (JAX uses its default device)")
    args = parser.parse_args()
    global MEMORY_BUDGET, DEVICE
    DEVICE = args.device
    if args.memory_budget_gib is not None:
        MEMORY_BUDGET = int(args.memory_budget_gib * 2**30)
    if args.one:
        print("RESULT " + json.dumps(one(args.one[0], int(args.one[1]))), flush=True)
        return
    from _common import machine, save, table

    rows = []
    for n in args.sizes:
        for method in args.methods:
            try:
                budget = ([] if args.memory_budget_gib is None
                          else ["--memory-budget-gib", str(args.memory_budget_gib)])
                budget += ["--device", args.device]
                proc = subprocess.run([sys.executable, __file__, "--one", method, str(n), *budget],
                                      capture_output=True, text=True, timeout=args.timeout)
                line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                row = json.loads(line[0][7:]) if line else {
                    "method": method, "n": n, "error": f"exit status {proc.returncode}; "
                    + (proc.stderr or proc.stdout)[-300:]}
            except subprocess.TimeoutExpired:
                row = {"method": method, "n": n, "error": f"over {args.timeout} s"}
            rows.append(row)
            print(table([row], list(row)), flush=True)
    peers = [m for m in args.methods if m.partition("@")[0] == "xrfm"]
    for row in rows:  # ratios against each xRFM budget at the same n
        for name in peers:
            peer = next((r for r in rows if r["method"] == name and r["n"] == row["n"]
                         and "seconds" in r), None)
            if peer and "seconds" in row and row is not peer:
                row[f"{name} / this (time)"] = peer["seconds"] / row["seconds"]
                row[f"this / {name} (memory)"] = row["peak GiB"] / peer["peak GiB"]
                row[f"acc - {name} acc"] = row["test acc"] - peer["test acc"]
    exponents = {}
    for method in args.methods:
        pts = [(r["n"], r["seconds"]) for r in rows if r["method"] == method and "seconds" in r]
        if len(pts) >= 2:
            exponents[method] = float(np.polyfit(np.log([p[0] for p in pts]),
                                                 np.log([p[1] for p in pts]), 1)[0])
    print()
    print(f"machine: {machine()}")
    cols = ["method", "n", "seconds", "peak GiB"] + (
        ["peak device GiB"] if args.device != "cpu" else []) + ["test acc"] + [
            f"{name} / this (time)" for name in peers] + [
            f"this / {name} (memory)" for name in peers] + [
            f"acc - {name} acc" for name in peers] + ["iters", "agop rows"]
    print(table([r for r in rows if "seconds" in r], cols))
    print("growth exponent of time with n:", {k: round(v, 2) for k, v in exponents.items()})
    print("saved", save("scale", {"machine": machine(), "rows": rows, "exponents": exponents}))


if __name__ == "__main__":
    main()
