"""Deep RFM with every training row in each layer's AGOP against the adaptive sample
(``agop_samples="auto"``): NC1 per layer over seeds, the rows each layer's AGOP used, the
test accuracy and the seconds, in one run; the two NC1 curves overlaid in one figure.

    python benchmarks/adaptive_agop.py [--dataset mnist5k] [--depth 10] [--seeds 0 1 2]

Writes benchmarks/results/adaptive_agop.json and docs/figures/adaptive_agop_nc1.png.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _common import machine  # noqa: E402

from dnc_jax import deep_rfm, load_dataset, prepare  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    X, y = load_dataset(args.dataset)
    Xt, yt = load_dataset(args.dataset, split="test")
    data = prepare(X, y, Xt, yt)
    runs = {}
    for label, samples in (("all rows", None), ("auto", "auto")):
        runs[label] = []
        for seed in args.seeds:
            tic = time.perf_counter()
            records = deep_rfm(data.X_train, data.y_train, data.X_test, data.y_test,
                               depth=args.depth, seed=seed, agop_samples=samples)
            runs[label].append({
                "seed": seed, "seconds": time.perf_counter() - tic,
                "nc1": [r.output.nc1 for r in records],
                "agop_rows": [r.solve.agop_rows for r in records],
                "test_accuracy": [r.test_accuracy for r in records]})
    n = len(data.y_train)
    print(f"Deep RFM on {args.dataset} (n = {n}), depth {args.depth}, seeds {args.seeds}; "
          f"{machine()}")
    print(f"{'layer':>5} " + " ".join(f"{'NC1 ' + k:>22} {'rows ' + k:>14}" for k in runs))
    summary = {}
    for label, rs in runs.items():
        nc1 = np.array([r["nc1"] for r in rs])
        summary[label] = {"nc1_mean": nc1.mean(0).tolist(), "nc1_std": nc1.std(0, ddof=1).tolist(),
                          "rows_mean": np.mean([r["agop_rows"] for r in rs], 0).tolist(),
                          "seconds_mean": float(np.mean([r["seconds"] for r in rs])),
                          "final_test_accuracy_mean": float(np.mean(
                              [r["test_accuracy"][-1] for r in rs]))}
    for layer in range(args.depth):
        cells = " ".join(
            f"{summary[k]['nc1_mean'][layer]:>12.4g} +- {summary[k]['nc1_std'][layer]:<7.2g}"
            f"{summary[k]['rows_mean'][layer]:>14.0f}" for k in runs)
        print(f"{layer:>5} {cells}")
    for label, s in summary.items():
        print(f"{label}: {s['seconds_mean']:.1f} s per run, final test accuracy "
              f"{s['final_test_accuracy_mean']:.4f} (mean over seeds)")
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    layers = np.arange(args.depth)
    for label, style in (("all rows", "-o"), ("auto", "--s")):
        mean = np.array(summary[label]["nc1_mean"])
        std = np.array(summary[label]["nc1_std"])
        ax.plot(layers, mean, style, label=f"{label} (mean of {len(args.seeds)} seeds)")
        ax.fill_between(layers, mean - std, mean + std, alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel("NC1 of the layer's output")
    ax.set_title(f"Deep RFM on {args.dataset}: every row vs the adaptive AGOP sample",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.join(ROOT, "docs", "figures"), exist_ok=True)
    fig.savefig(os.path.join(ROOT, "docs", "figures", "adaptive_agop_nc1.png"), dpi=120)
    os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "benchmarks", "results", "adaptive_agop.json"), "w") as fh:
        json.dump({"args": vars(args), "machine": machine(), "runs": runs,
                   "summary": summary}, fh, indent=1)


if __name__ == "__main__":
    main()
