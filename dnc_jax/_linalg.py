"""Matrix products in full float32.

XLA's default float32 matmul precision on recent NVIDIA GPUs is TF32 (10-bit mantissa):
measured on an H100, it left the closed-form AGOP 1.2e-3 away from autodiff. The products
whose rounding reaches the library's results ask for full precision explicitly (a no-op on
CPU). A global ``jax.default_matmul_precision("highest")`` context around the entry points
was tried instead and made every benchmark stall on that GPU (cause not established).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` with ``precision=HIGHEST``."""
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)
