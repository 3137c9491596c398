"""The toolkit metrics at language-model scale: C classes of d-dimensional means, tiled.

    python benchmarks/many_classes.py                     # C = 30,000, d = 1,024
    python benchmarks/many_classes.py --classes 3000 --dim 256

Prints each metric's value and seconds, and the process's peak resident memory against
what one C x C float32 matrix would take (the bound the tiling keeps: O(C d + tile^2)).
Synthetic means: Gaussian class means, per-class variances, a random classifier, and
held-out rows drawn around the means.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--classes", type=int, default=30_000)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--rows", type=int, default=60_000, help="training rows for class_moments")
    p.add_argument("--held-out", type=int, default=10_000)
    p.add_argument("--tile", type=int, default=2048)
    args = p.parse_args()

    import jax

    from dnc_jax.collapse_toolkit import (
        class_moments,
        hyperspherical_uniformity,
        ncc_agreement,
        ood_orthogonality,
        tiled_cdnv,
        uniform_duality,
    )

    C, d = args.classes, args.dim
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((C, d), dtype=np.float32)
    y = rng.permutation(np.arange(args.rows) % C)
    H = centres[y] + 0.5 * rng.standard_normal((args.rows, d), dtype=np.float32)
    W = centres + 0.3 * rng.standard_normal((C, d), dtype=np.float32)
    X_held = centres[rng.integers(0, C, args.held_out)] + 0.5 * rng.standard_normal(
        (args.held_out, d), dtype=np.float32)
    ood = rng.standard_normal(d).astype(np.float32)
    rows = []

    def timed(name, fn):
        tic = time.perf_counter()
        value = fn()
        rows.append((name, value, time.perf_counter() - tic))
        return value

    moments = timed("class_moments", lambda: class_moments(H, y, num_classes=C))
    means = moments.means.astype(np.float32)
    for kernel in ("dist", "log", "riesz"):
        timed(f"GNC2 {kernel} (mean, var)",
              lambda kernel=kernel: hyperspherical_uniformity(means, kernel=kernel,
                                                             tile=args.tile))
    timed("CDNV (tiled)", lambda: tiled_cdnv(means, moments.variances, tile=args.tile))
    timed("UNC3", lambda: uniform_duality(W, means))
    timed("NC4 held-out agreement", lambda: ncc_agreement(X_held, W, means))
    timed("NC5", lambda: ood_orthogonality(means, ood))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"C = {C}, d = {d}, {args.rows} training rows, {args.held_out} held-out, tile "
          f"{args.tile}; jax {jax.__version__} on {jax.devices()[0].platform}")
    print(f"{'metric':28s} {'value':>32s} {'s':>8s}")
    for name, value, sec in rows:
        if name == "class_moments":
            shown = f"{len(value.counts)} classes"
        elif isinstance(value, tuple):
            shown = f"({value[0]:.6g}, {value[1]:.4g})"
        else:
            shown = f"{value:.6g}"
        print(f"{name:28s} {shown:>32s} {sec:8.2f}")
    inputs = (H.nbytes + X_held.nbytes + W.nbytes + centres.nbytes) / 2**30
    print(f"peak resident memory {peak / 2**30:.2f} GiB (inputs {inputs:.2f} GiB); one C x C "
          f"float32 matrix would be {C * C * 4 / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
