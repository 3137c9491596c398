"""The precision policy: every product whose result reaches a reported number is computed
in full precision of its dtype, here and nowhere else.

XLA's default float32 matmul precision on recent NVIDIA GPUs is TF32 (10-bit mantissa) and
on TPUs bfloat16 passes, which leaves a closed-form AGOP about 1e-3 away from autodiff
(BENCHMARKS.md, "AGOP of a Laplace predictor"). So the library never writes ``a @ b`` on
JAX arrays that feed a kernel value, a gradient, an AGOP, a collapse metric, a projection
or a network's forward pass: it calls ``matmul``, which asks for ``Precision.HIGHEST`` (a
no-op on CPU; float32-exact on GPUs and TPUs). A GPU run therefore reports the CPU's
numbers to float32 rounding. Host-side algebra (eigendecompositions, small Gram matrices)
runs in numpy float64. A global ``jax.default_matmul_precision("highest")`` context around
the entry points is not used (BENCHMARKS.md, "Measurements the code's choices rest on").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PRECISION = jax.lax.Precision.HIGHEST


def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` at ``PRECISION``."""
    return jnp.matmul(a, b, precision=PRECISION)


def einsum(subscripts: str, *operands: jax.Array) -> jax.Array:
    """``jnp.einsum`` at ``PRECISION``."""
    return jnp.einsum(subscripts, *operands, precision=PRECISION)
