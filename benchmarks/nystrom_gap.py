"""Where a Nyström machine's accuracy and depth collapse part from the exact solver's.

    python benchmarks/nystrom_gap.py rfm --n 20000 --centers 5000 10000
    python benchmarks/nystrom_gap.py deep --n 10000 --centers 5000 --depth 10 --variant rpc

``rfm``: the settings of ``benchmarks/scale.py`` (shifted MNIST, Laplace, bandwidth 10,
ridge 1e-3, 2 AGOP iterations from 20,000 points). (1) Which half loses the accuracy: RFM
with every fit Nyström (``m`` = the first ``--centers``) and with every fit exact
(Cholesky), then each one's final metric refitted by the other solver; and both solvers
with no metric. (2) With the exact run's metric, the final Nyström fit varied: its ridge
(``(K_nm^T K_nm + lam K_mm) beta = K_nm^T Y``), FITC's diagonal correction (each row
weighted by ``lam / (lam + k(x, x) - q(x, x))``, ``q`` the Nyström approximation; equal
to the plain fit for ``m = n``), and centres chosen by randomly pivoted Cholesky (Chen,
Epperly, Tropp and Webber 2023, block version) against uniform ones, for each ``m``.
These are dense float64 solves of the ``m x m`` normal equations on the host, not the
library's PCG (which converges to the same ``beta``).

``deep``: ``dnc-jax deep-rfm --dataset mnist_shifted --centers m --agop-samples 20000``
with one part of each layer's Nyström machine replaced for the run: ``--variant rpc``
chooses the centres by randomly pivoted Cholesky instead of uniformly; ``--variant
agop-at-centers`` takes the AGOP at the ``m`` centres (where the machine's own kernel
terms have their cusps, as the exact solver's do at every training point) instead of at
sampled training rows. Compare its ``results.json`` (``results/deep_rfm_runs/deep_rfm-VARIANTNk.json``)
with the exact and uniform-centre runs there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from dnc_jax.data import one_hot_pm1
from dnc_jax.kernels import kernel_matrix
from dnc_jax.precision import matmul


def kernel64(A: np.ndarray, B: np.ndarray, bandwidth: float) -> np.ndarray:
    """Laplace ``K(A, B)`` by the library (float32, 2,000 rows at a time), as float64."""
    return np.concatenate([
        np.asarray(kernel_matrix(jnp.asarray(A[i:i + 2000]), jnp.asarray(B), "laplace",
                                 bandwidth, None)) for i in range(0, len(A), 2000)
    ]).astype(np.float64)


def rpcholesky_centers(Z: np.ndarray, m: int, bandwidth: float, block: int = 250,
                       seed: int = 0) -> np.ndarray:
    """Indices of ``m`` centres by block randomly pivoted Cholesky: each block of rows is
    drawn with probability proportional to the diagonal of ``K - F F^T`` left so far."""
    n = Z.shape[0]
    rng = np.random.default_rng(seed)
    residual = np.ones(n)  # k(x, x) = 1 for the Laplace kernel
    F = np.zeros((n, m), np.float32)
    chosen: list[int] = []
    k = 0
    while len(chosen) < m:
        b = min(block, m - len(chosen))
        idx = rng.choice(n, b, replace=False, p=residual / residual.sum())
        G = kernel64(Z, Z[idx], bandwidth) - F[:, :k] @ F[idx, :k].T
        evals, evecs = np.linalg.eigh((G[idx] + G[idx].T) / 2)
        keep = evals > 1e-8 * evals[-1]
        new = G @ (evecs[:, keep] / np.sqrt(evals[keep]))
        F[:, k:k + new.shape[1]] = new
        residual = np.clip(residual - np.sum(new.astype(np.float64) ** 2, 1), 0, None)
        chosen.extend(idx)
        k += new.shape[1]
    return np.sort(np.array(chosen))


def rfm_mode(n: int, centers: list[int]) -> dict:
    from scale import AGOP_POINTS, BANDWIDTH, ITERS, REG, data

    from dnc_jax import RFM
    from dnc_jax.solvers import fit_kernel_ridge

    X, y, Xt, yt = data(n)
    Y = one_hot_pm1(y, 10)
    out: dict = {"n": n, "centers": centers}

    def final(T, **solver):
        tic = time.perf_counter()
        predictor, _ = fit_kernel_ridge(matmul(jnp.asarray(X), T), Y, kernel="laplace",
                                        bandwidth=BANDWIDTH, reg=REG, **solver)
        pred = np.asarray(predictor.predict(matmul(jnp.asarray(Xt), T)))
        return {"test acc": float(np.mean(np.argmax(pred, 1) == yt)),
                "s": time.perf_counter() - tic}

    nystrom, exact = {"centers": centers[0]}, {"solver": "cholesky"}
    metrics = {}
    for name, solver, other in (("nystrom", nystrom, exact), ("exact", exact, nystrom)):
        tic = time.perf_counter()
        model = RFM(kernel="laplace", bandwidth=BANDWIDTH, reg=REG, iters=ITERS,
                    agop_power=0.5, normalize="max", batch_size=2000,
                    agop_samples=AGOP_POINTS, **solver).fit(X, y)
        metrics[name] = model.transform_
        out[f"RFM, every fit {name}"] = {"test acc": float(np.mean(model.predict(Xt) == yt)),
                                         "s": time.perf_counter() - tic}
        out[f"{name} metric, final fit by the other"] = final(model.transform_, **other)
        print(json.dumps(out), flush=True)
    eye = jnp.eye(X.shape[1], dtype=jnp.float32)
    out["no metric, exact"] = final(eye, **exact)
    out["no metric, nystrom"] = final(eye, **nystrom)
    print(json.dumps(out), flush=True)

    # (2) the final Nyström fit on the exact metric, varied
    T = np.asarray(metrics["exact"])
    Z = np.asarray(matmul(jnp.asarray(X), T))
    Zt = np.asarray(matmul(jnp.asarray(Xt), T))
    Y64 = Y.astype(np.float64)

    def centre_matrices(idx):  # K_nm, K_mm and the test rows' K_tm, once per centre set
        C = Z[idx]
        return kernel64(Z, C, BANDWIDTH), kernel64(C, C, BANDWIDTH), kernel64(Zt, C, BANDWIDTH)

    def nystrom_fit(matrices, lam, fitc=False):
        K_nm, K_mm, K_tm = matrices
        w = np.ones(n)
        if fitc:
            L = np.linalg.cholesky(K_mm + 1e-7 * np.eye(len(K_mm)))
            V = scipy.linalg.solve_triangular(L, K_nm.T, lower=True)
            w = lam / (lam + np.clip(1.0 - np.sum(V * V, 0), 0, None))
        beta = scipy.linalg.solve((K_nm.T * w) @ K_nm + lam * K_mm, (K_nm.T * w) @ Y64,
                                  assume_a="pos")
        return {"test acc": float(np.mean(np.argmax(K_tm @ beta, 1) == yt)),
                "train acc": float(np.mean(np.argmax(K_nm @ beta, 1) == y))}

    for m in centers:
        uniform = centre_matrices(np.sort(np.random.default_rng(0).choice(n, m, replace=False)))
        for lam in ((REG, 1e-2, 1e-1, 1.0) if m == centers[0] else (REG,)):
            out[f"exact metric, m={m} uniform, lam={lam:g}"] = nystrom_fit(uniform, lam)
        if m == centers[0]:
            for lam in (REG, 1e-2):
                out[f"exact metric, m={m} uniform FITC, lam={lam:g}"] = nystrom_fit(
                    uniform, lam, fitc=True)
        del uniform
        tic = time.perf_counter()
        rpc = rpcholesky_centers(Z, m, BANDWIDTH)
        out[f"exact metric, m={m} RPCholesky, lam={REG:g}"] = nystrom_fit(
            centre_matrices(rpc), REG) | {"selection s": time.perf_counter() - tic}
        print(json.dumps(out), flush=True)
    return out


def deep_mode(n: int, m: int, depth: int, variant: str, target: str) -> None:
    import shutil
    import tempfile

    import dnc_jax.rfm as rfm
    import dnc_jax.solvers.ridge as solvers  # where fit_kernel_ridge looks up choose_centers
    from dnc_jax import cli
    from dnc_jax.sharding import REPLICATED

    if variant == "rpc":
        def rpc_centers(X, centers, seed):
            rows = X.valid()
            idx = rpcholesky_centers(np.asarray(rows), int(centers), 2.0, seed=seed)
            return jax.device_put(rows[idx], jax.sharding.NamedSharding(X.mesh, REPLICATED))

        solvers.choose_centers = rpc_centers  # 2.0: Deep RFM's bandwidth
    else:
        full_agop = rfm.kernel_agop

        def agop_at_centers(predictor, Z, **options):
            return full_agop(predictor, predictor.centers, **(options | {"samples": None,
                                                                          "mesh": None}))

        rfm.kernel_agop = agop_at_centers
    with tempfile.TemporaryDirectory() as out_dir:
        cli.main(["deep-rfm", "--dataset", "mnist_shifted", "--n", str(n), "--depth",
                  str(depth), "--centers", str(m), "--agop-samples", "20000", "--out", out_dir])
        shutil.copyfile(os.path.join(out_dir, "results.json"), target)
        print("wrote", target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("rfm", "deep"))
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--centers", type=int, nargs="+", default=[5000, 10000])
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--variant", choices=("rpc", "agop-at-centers"), default="rpc")
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(__file__))
    from _common import RESULTS, machine, save

    if args.mode == "deep":
        deep_mode(args.n, args.centers[0], args.depth, args.variant,
                  os.path.join(RESULTS, "deep_rfm_runs",
                               f"deep_rfm-{args.variant}{args.n // 1000}k.json"))
        return
    out = rfm_mode(args.n, args.centers)
    out["machine"] = machine()
    save(f"nystrom-gap-{args.n // 1000}k", out)


if __name__ == "__main__":
    main()
