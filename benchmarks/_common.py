"""Shared helpers of the benchmark scripts: timing, the machine's matmul ceiling, tables, JSON."""

from __future__ import annotations

import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def block(x):
    """Wait for JAX arrays (any pytree) to be computed."""
    return jax.tree.map(lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a, x)


def best_time(fn, repeats: int = 3, warmup: int = 1) -> float:
    """Best wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs (compilation)."""
    for _ in range(warmup):
        block(fn())
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        block(fn())
        times.append(time.perf_counter() - tic)
    return min(times)


def matmul_gflops(sizes=(2048, 4096, 6144), dtype=jnp.float32) -> float:
    """This machine's measured dense matmul rate (GFLOP/s) with JAX, full float32 precision:
    the best over square products of ``sizes`` (the ceiling we compare with)."""
    f = jax.jit(lambda x, y: jnp.matmul(x, y, precision=jax.lax.Precision.HIGHEST))
    best = 0.0
    for n in sizes:
        key = jax.random.key(n)
        a = jax.random.normal(key, (n, n), dtype)
        b = jax.random.normal(jax.random.fold_in(key, 1), (n, n), dtype)
        best = max(best, 2 * n**3 / best_time(lambda a=a, b=b: f(a, b), repeats=3) / 1e9)
    return best


def torch_matmul_gflops(n: int = 4096, device: str = "cpu") -> float | None:
    try:
        import torch
    except ImportError:
        return None
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)

    def product():
        out = a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        return out

    return 2 * n**3 / best_time(product, repeats=5) / 1e9


def machine() -> dict:
    dev = jax.devices()[0]
    info = {"platform": dev.platform, "device": dev.device_kind, "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "jax": jax.__version__, "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        if names:
            info["cpu_model"] = names[0]
    except OSError:
        pass
    return info


def table(rows: list[dict], columns: list[str]) -> str:
    """Fixed-width table of ``rows`` (dicts) in ``columns`` order; floats to 4 significant digits."""
    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def save(name: str, payload: dict) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    dev = jax.devices()[0].platform
    path = os.path.join(RESULTS, f"{name}-{dev}.json")
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=2,
                  default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o))
    return path


def shifted_mnist(n: int, seed: int = 0):
    """MNIST-shaped data beyond the 4,000 embedded training images: those images and copies
    shifted by up to 2 pixels in each direction (25 variants, 100,000 images), shuffled;
    the first ``n`` are returned with the embedded 1,000-image test split (raw pixels)."""
    from dnc_jax.data import load_dataset

    X, y = load_dataset("mnist5k")
    Xt, yt = load_dataset("mnist5k", split="test")
    images = X.reshape(-1, 28, 28)
    shifts = [(0, 0)] + [(a, b) for a in range(-2, 3) for b in range(-2, 3) if (a, b) != (0, 0)]
    if n > len(shifts) * len(y):
        raise SystemExit(f"shifted MNIST has {len(shifts) * len(y)} images; n={n} is too many.")
    copies = [np.roll(images, s, axis=(1, 2)).reshape(-1, 784) for s in shifts]
    Xa, ya = np.concatenate(copies), np.tile(y, len(shifts))
    order = np.random.default_rng(seed).permutation(len(ya))[:n]
    return Xa[order], ya[order], Xt, yt
