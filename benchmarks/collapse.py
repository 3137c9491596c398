"""Collapse metrics at scale: dnc_jax's streaming C x C route vs the d x d pseudo-inverse
formulation of the widely copied reference code (Papyan et al.), in one run.

    python benchmarks/collapse.py [--n 50000] [--dims 512 4096] [--classes 10]

Each (method, d) runs in a fresh subprocess so that its peak resident memory
(/proc VmHWM, reset once the features exist, less the resident size after imports) can be
set against the feature array.
The reference builds Sigma_W and Sigma_B (d x d, float64, as the reference code does after
moving to numpy), takes scipy.linalg.pinv(Sigma_B, rcond=1e-6) and tr(Sigma_W Sigma_B^+).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _common import machine, save, table


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(field)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def reference_nc1_pinv(H, y, C):
    import numpy as np
    import scipy.linalg

    n, d = H.shape
    mu_g = np.zeros(d)
    means = []
    for c in range(C):
        means.append(H[y == c].astype(np.float64).mean(axis=0))
    means = np.stack(means)
    mu_g = means.mean(axis=0)
    Sw = np.zeros((d, d))
    for c in range(C):
        R = H[y == c].astype(np.float64) - means[c]
        Sw += R.T @ R
    Sw /= n
    Mt = means - mu_g
    Sb = Mt.T @ Mt / C
    inv_Sb = scipy.linalg.pinv(Sb, rtol=1e-6)
    return float(np.trace(Sw @ inv_Sb)) / C


def worker(method: str, n: int, d: int, C: int) -> dict:
    import numpy as np

    from dnc_jax import collapse_metrics

    rng = np.random.default_rng(0)
    base = _rss_kib("VmRSS") * 1024  # after imports; memory the warm-up keeps counts as used
    y = np.arange(n) % C
    if method == "dnc_jax":  # warm-up: compile for these shapes outside the timing
        collapse_metrics(np.zeros((n, d), np.float32) + np.arange(C, dtype=np.float32)[y, None], y)
    H = rng.standard_normal((n, d), dtype=np.float32)
    H += 3.0 * rng.standard_normal((C, d), dtype=np.float32)[y]
    _reset_peak()  # peak = the features + whatever the method adds (or kept from warm-up)
    tic = time.perf_counter()
    if method == "dnc_jax":
        value = collapse_metrics(H, y).nc1_pinv
    else:
        value = reference_nc1_pinv(H, y, C)
    seconds = time.perf_counter() - tic
    peak = _rss_kib("VmHWM") * 1024 - base
    return {"method": method, "d": d, "seconds": seconds, "nc1_pinv": value,
            "peak_bytes": peak, "feature_bytes": H.nbytes}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50000)
    parser.add_argument("--dims", type=int, nargs="+", default=[512, 4096])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        method, n, d, C = args.worker
        print(json.dumps(worker(method, int(n), int(d), int(C))))
        return
    rows = []
    for d in args.dims:
        found = {}
        for method in ("dnc_jax", "reference"):
            out = subprocess.run(
                [sys.executable, __file__, "--worker", method, str(args.n), str(d),
                 str(args.classes)], capture_output=True, text=True, check=True,
            ).stdout.strip().splitlines()[-1]
            found[method] = json.loads(out)
        ours, ref = found["dnc_jax"], found["reference"]
        rows.append({
            "n": args.n, "d": d, "C": args.classes,
            "dnc_jax s": ours["seconds"], "reference s": ref["seconds"],
            "speed-up": ref["seconds"] / ours["seconds"],
            "dnc_jax peak / features": ours["peak_bytes"] / ours["feature_bytes"],
            "reference peak / features": ref["peak_bytes"] / ref["feature_bytes"],
            "features MB": ours["feature_bytes"] / 2**20,
            "nc1_pinv rel diff": abs(ours["nc1_pinv"] - ref["nc1_pinv"]) / abs(ref["nc1_pinv"]),
        })
        print(table(rows[-1:], list(rows[-1])), flush=True)
    print()
    print(f"machine: {machine()}")
    print(table(rows, list(rows[0])))
    print("saved", save("collapse", {"machine": machine(), "rows": rows}))


if __name__ == "__main__":
    main()
