"""Input validation shared by the public entry points (host side, before any jit).

Value checks (finite, positive) need concrete values: under ``jax.jit``, ``vmap`` or
``grad`` an argument is a tracer and they are skipped (shape checks still run), so that
the public functions compose with JAX's transformations.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


class Float64Warning(UserWarning):
    """float64 input computed in float32 because JAX's 64-bit mode is off."""


_warned_float64 = False


def warn_float64_dropped(dtype) -> None:
    """Warn once per process when a float64 input will be computed in float32."""
    global _warned_float64
    if _warned_float64 or jax.config.read("jax_enable_x64") or np.dtype(dtype) != np.float64:
        return
    _warned_float64 = True
    warnings.warn(
        "dnc_jax computes this float64 input in float32: JAX's 64-bit mode is off. For "
        "float64, call jax.config.update('jax_enable_x64', True) before any computation "
        "(or set JAX_ENABLE_X64=1). This warning is shown once.", Float64Warning,
        stacklevel=3)


def as_float_matrix(name: str, X: ArrayLike, *, dtype=None) -> jax.Array:
    """Return ``X`` as a 2-D floating JAX array, or raise ``ValueError``.

    Integer inputs become float32 (or ``dtype``). A float64 input stays float64 when
    ``jax_enable_x64`` is on; otherwise it becomes float32, with one ``Float64Warning``
    per process that says how to turn 64-bit mode on.
    """
    arr = X if isinstance(X, jax.Array) else np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (samples x features); got shape {arr.shape}.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); pass at least one sample and one feature.")
    if dtype is None:
        dtype = arr.dtype if jnp.issubdtype(arr.dtype, jnp.floating) else jnp.float32
        warn_float64_dropped(dtype)
    dtype = jax.dtypes.canonicalize_dtype(dtype)
    if isinstance(arr, jax.Array):
        return arr if arr.dtype == dtype else arr.astype(dtype)
    # device_put copies once; jnp.asarray would hold two copies of a large array at its peak
    return jax.device_put(np.asarray(arr, dtype=dtype))


def is_traced(*values) -> bool:
    """Whether any of ``values`` (pytrees) holds a tracer (inside a JAX transformation)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(values))


def check_finite(name: str, X: jax.Array) -> None:
    """Raise ``ValueError`` if ``X`` holds a NaN or an infinity (skipped for tracers)."""
    if is_traced(X):
        return
    with jax.ensure_compile_time_eval():  # a concrete array inside someone's jit
        finite = bool(jnp.isfinite(X).all())
    if not finite:
        raise ValueError(
            f"{name} contains NaN or infinite values; clean or impute them before calling."
        )


def check_same_rows(name_a: str, a, name_b: str, b) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same number of rows."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} has {a.shape[0]} rows but {name_b} has {b.shape[0]}; "
            "they must describe the same samples."
        )


def check_positive(name: str, value: ArrayLike) -> None:
    if is_traced(value):
        return
    number = np.asarray(value)
    if not (np.isrealobj(number) and np.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}.")


def check_nonnegative(name: str, value: ArrayLike) -> None:
    if is_traced(value):
        return
    number = np.asarray(value)
    if not (np.isrealobj(number) and np.isfinite(number) and number >= 0):
        raise ValueError(f"{name} must be a non-negative finite number; got {value!r}.")
