"""Random circulant features against an i.i.d. block and the identity metric: one Gaussian
kernel fit each (rfm-grokking's train_random_circulant_kernel.py settings: L = 2.5, ridge
0, half of the p^2 pairs), test accuracy over metric seeds (mean +- std, ``n - 1``).

    python benchmarks/random_circulant.py --p 61 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from dnc_jax.followups import GrokkingConfig  # noqa: E402
from dnc_jax.followups.grokking import grokking_steps  # noqa: E402
from dnc_jax.followups.random_circulant import random_circulant_fit  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--p", type=int, default=61)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args()
    tic = time.perf_counter()
    print(f"p = {args.p}; test accuracy, mean +- std over metric seeds {args.seeds}")
    print("| op | random circulant | i.i.d. block | identity metric |")
    print("|---|---|---|---|")
    for op in ("+", "-", "*", "/"):
        config = GrokkingConfig(p=args.p, op=op)
        cells = []
        for structure in ("circulant", "iid"):
            acc = np.array([random_circulant_fit(config, s, structure).record.test_accuracy
                            for s in args.seeds])
            cells.append(f"{acc.mean():.3f} +- {acc.std(ddof=1):.3f}")
        identity = next(grokking_steps(GrokkingConfig(p=args.p, op=op, iters=1)))[0]
        print(f"| {op} | {cells[0]} | {cells[1]} | {identity.test_accuracy:.3f} |", flush=True)
    print(f"\n{time.perf_counter() - tic:.0f} s")


if __name__ == "__main__":
    main()
