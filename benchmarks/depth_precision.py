"""Deep RFM at depth in float32 against the same run in float64: NC1 per layer.

The float64 run is the reference: where float32 parts from it (relative NC1 difference
over 5%) is the depth from which float32 layers should not be trusted.

    python benchmarks/depth_precision.py --n 1000 --depth 20 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from _common import machine, save  # noqa: E402

from dnc_jax.data import load_dataset, prepare  # noqa: E402
from dnc_jax.deep_rfm_model import deep_rfm  # noqa: E402

POINTS = ("input", "projected", "output")


def run(n: int, depth: int, seed: int, dtype: str) -> tuple[np.ndarray, float]:
    X, y = load_dataset("mnist5k", "train", n)
    data = prepare(X, y)
    tic = time.perf_counter()
    records = deep_rfm(data.X_train, data.y_train, depth=depth, seed=seed, dtype=dtype)
    nc1 = np.array([[r.at(p).nc1 for p in POINTS] for r in records])
    return nc1, time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    out = {"n": args.n, "depth": args.depth, "seeds": args.seeds, "runs": []}
    for seed in args.seeds:
        nc1_32, t32 = run(args.n, args.depth, seed, "float32")
        nc1_64, t64 = run(args.n, args.depth, seed, "float64")
        rel = np.abs(nc1_32 - nc1_64) / nc1_64
        parted = np.nonzero(rel.max(axis=1) > 0.05)[0]
        first = int(parted[0]) if parted.size else None
        print(f"seed {seed}: float32 {t32:.1f} s, float64 {t64:.1f} s; first layer over 5%: {first}")
        print(f"{'layer':>5} " + " ".join(f"{p + ' f32':>14} {p + ' f64':>14} {'rel':>7}"
                                          for p in POINTS))
        for layer in range(args.depth):
            print(f"{layer:>5} " + " ".join(
                f"{nc1_32[layer, j]:>14.4e} {nc1_64[layer, j]:>14.4e} {rel[layer, j]:>7.3f}"
                for j in range(len(POINTS))))
        out["runs"].append({"seed": seed, "nc1_float32": nc1_32.tolist(),
                            "nc1_float64": nc1_64.tolist(), "first_parting_layer": first,
                            "seconds": {"float32": t32, "float64": t64}})
    out["machine"] = machine()
    save(f"depth-precision-n{args.n}-d{args.depth}", out)


if __name__ == "__main__":
    main()
