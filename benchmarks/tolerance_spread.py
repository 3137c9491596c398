"""How far float32 parts from float64 in the depth test, under what varies between machines.

Runs the computation of
``tests/test_deep_rfm_model.py::test_float32_tracks_float64_until_the_layers_where_it_parts``
(500 embedded MNIST images, width 256, depth 20) once per variation, each in a fresh
process: XLA's CPU instruction set capped (``--xla_cpu_max_isa``), XNNPACK off, Eigen
single-threaded, one core (``taskset``). Prints, per variation, the largest relative NC1
difference float32 / float64 over layers ``0..k`` for each ``k``; the test's bounds are set
from the worst variation with margin (TESTING.md).

    python benchmarks/tolerance_spread.py [--variations default avx2 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

VARIATIONS = {
    "default": ({}, []),
    "avx2": ({"XLA_FLAGS": "--xla_cpu_max_isa=AVX2"}, []),
    "sse4_2": ({"XLA_FLAGS": "--xla_cpu_max_isa=SSE4_2"}, []),
    "no-xnnpack": ({"XLA_FLAGS": "--xla_cpu_use_xnnpack=false"}, []),
    "eigen-1-thread": ({"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}, []),
    "one-core": ({}, ["taskset", "-c", "0"]),
}

CHILD = """
import json, jax, numpy as np
jax.config.update("jax_enable_x64", True)
from dnc_jax.data import load_dataset, prepare
from dnc_jax.deep_rfm_model import deep_rfm
X, y = load_dataset("mnist5k", "train", 500)
data = prepare(X, y)
nc1 = {}
for dtype in ("float32", "float64"):
    records = deep_rfm(data.X_train, data.y_train, depth=20, width=256, dtype=dtype)
    nc1[dtype] = [[r.at(p).nc1 for p in ("input", "projected", "output")] for r in records]
print(json.dumps(nc1))
"""


def run(name: str) -> np.ndarray:
    env_extra, prefix = VARIATIONS[name]
    env = os.environ | env_extra
    out = subprocess.run(prefix + [sys.executable, "-c", CHILD], env=env, check=True,
                         capture_output=True, text=True).stdout
    nc1 = json.loads(out.strip().splitlines()[-1])
    f32, f64 = np.array(nc1["float32"]), np.array(nc1["float64"])
    return (np.abs(f32 - f64) / f64).max(axis=1)  # per layer, worst of the three points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variations", nargs="+", default=list(VARIATIONS), choices=VARIATIONS)
    args = parser.parse_args()
    rows = {name: run(name) for name in args.variations}
    depth = len(next(iter(rows.values())))
    print("max relative NC1 difference float32 / float64 over layers 0..k")
    print("k    " + "  ".join(f"{name:>14}" for name in rows))
    for k in range(depth):
        print(f"{k:<4} " + "  ".join(f"{np.max(r[:k + 1]):14.4f}" for r in rows.values()))
    path = os.path.join(os.path.dirname(__file__), "results", "tolerance-spread-cpu.json")
    with open(path, "w") as fh:
        json.dump({name: r.tolist() for name, r in rows.items()}, fh, indent=1)
    print("saved", path)


if __name__ == "__main__":
    main()
