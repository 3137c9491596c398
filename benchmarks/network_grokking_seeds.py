"""The network grokking run (rfm-grokking's train_net.py settings, p = 13, 70% of the
pairs, 600 epochs) over seeds: when train and test accuracy pass 0.9, the final test
accuracy, and the NFA (Pearson correlation of W1^T W1 with AGOP^(1/2)) at the end.

    python benchmarks/network_grokking_seeds.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from dnc_jax.followups import NetGrokkingConfig, grokking_net  # noqa: E402


def first(records, key, level):
    return next((r["epoch"] for r in records if r[key] >= level), None)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=600)
    args = p.parse_args()
    rows = []
    for seed in args.seeds:
        tic = time.perf_counter()
        records = grokking_net(NetGrokkingConfig(p=13, train_fraction=0.7, epochs=args.epochs,
                                                 measure_every=50, seed=seed))
        rows.append((seed, first(records, "train_accuracy", 0.9),
                     first(records, "test_accuracy", 0.9), records[-1]["test_accuracy"],
                     records[-1]["nfa_corr"], records[-1]["nfa_no_diag_corr"],
                     time.perf_counter() - tic))
    print("seed  train>=0.9  test>=0.9  final test  NFA corr  NFA corr (no diag)      s")
    for r in rows:
        print(f"{r[0]:4d}  {r[1]!s:>10}  {r[2]!s:>9}  {r[3]:10.3f}  {r[4]:8.4f}  {r[5]:18.4f}  {r[6]:5.1f}")
    for name, i in (("test>=0.9 epoch", 2), ("final test", 3), ("NFA corr", 4)):
        vals = np.array([r[i] for r in rows if r[i] is not None], float)
        print(f"{name}: mean {vals.mean():.4g}, std {vals.std(ddof=1) if len(vals) > 1 else 0:.3g} "
              f"(n - 1), over {len(vals)} seeds")


if __name__ == "__main__":
    main()
