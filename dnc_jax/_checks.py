"""Input validation shared by the public entry points (host side, before any jit).

Eagerly a failed check is a ``ValueError`` that names the argument. Under ``jax.jit``,
``vmap`` or ``grad`` an argument is a tracer and Python cannot raise on its value: the
same value checks (finite, positive, labels in range) are then ``checkify.debug_check``s,
no-ops unless the caller runs the computation through ``dnc_jax.checked`` (or
``jax.experimental.checkify.checkify``), which reports them; unchecked, the functions
return NaN where their inputs leave an output undefined. Shape checks run in both.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify
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


def traced_check(pred, message: str, **values) -> None:
    """A value check on traced arrays: reported when run through ``checked``, a no-op
    otherwise (``checkify.debug_check``)."""
    checkify.debug_check(pred, message, **values)


def check_finite(name: str, X: jax.Array) -> None:
    """Raise ``ValueError`` if ``X`` holds a NaN or an infinity (a ``traced_check`` for
    tracers)."""
    if is_traced(X):
        traced_check(jnp.isfinite(X).all(), f"{name} contains NaN or infinite values.")
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
    """``ValueError`` unless ``value`` is a positive finite number (traced: ``traced_check``)."""
    if is_traced(value):
        traced = jnp.asarray(value)
        traced_check(jnp.all(jnp.isfinite(traced) & (traced > 0)),
                     f"{name} must be a positive finite number; got {{value}}.", value=traced)
        return
    number = np.asarray(value)
    if not (np.isrealobj(number) and np.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}.")


def check_nonnegative(name: str, value: ArrayLike) -> None:
    """``ValueError`` unless ``value`` is a finite number ``>= 0`` (traced: ``traced_check``)."""
    if is_traced(value):
        traced = jnp.asarray(value)
        traced_check(jnp.all(jnp.isfinite(traced) & (traced >= 0)),
                     f"{name} must be a non-negative finite number; got {{value}}.", value=traced)
        return
    number = np.asarray(value)
    if not (np.isrealobj(number) and np.isfinite(number) and number >= 0):
        raise ValueError(f"{name} must be a non-negative finite number; got {value!r}.")


def nan_unless(ok, x: jax.Array) -> jax.Array:
    """``x`` where ``ok``, NaN elsewhere: the documented answer of a traced call whose
    input leaves ``x`` undefined (``ok`` broadcasts against ``x``)."""
    return jnp.where(ok, x, jnp.nan)


def checked(fn, *, errors=checkify.user_checks):
    """``fn`` with dnc_jax's value checks reported under ``jit``, ``vmap`` and ``grad``.

    Eagerly every public function raises ``ValueError`` on bad values. Traced, Python
    cannot raise, so the checks are ``checkify`` checks that only a checked call runs:
    ``dnc_jax.checked(jax.jit(f))(x)`` runs ``f`` as one program and raises
    ``jax.experimental.checkify.JaxRuntimeError`` naming the first failed check (NaN or
    infinite inputs, labels out of range, an empty class, a bandwidth or ridge that is not
    positive). Wrap the outermost call: the error is thrown on the host. ``errors`` adds
    checkify's own sets (e.g. ``checkify.user_checks | checkify.nan_checks``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import dnc_jax as dj
      >>> f = jax.jit(lambda L: dj.laplace_kernel(jnp.ones((2, 3)), jnp.ones((2, 3)), L))
      >>> bool(jnp.isnan(f(-1.0)).all())  # unchecked: the documented NaN
      True
      >>> dj.checked(f)(-1.0)  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      jax._src.checkify.JaxRuntimeError: bandwidth must be a positive finite number; got -1.0...
    """
    import functools

    @functools.wraps(fn)
    def run(*args, **kwargs):
        error, out = checkify.checkify(fn, errors=errors)(*args, **kwargs)
        error.throw()
        return out

    return run
