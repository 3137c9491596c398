"""A user's function as the program it traces to, compared by that program's text.

Library functions that take a user's function (``agop``'s ``f``, a radial kernel's
profile, a Deep RFM feature map) must neither bake the values it closes over into a
compiled program unseen nor compile anew at every call. So the function is traced
(``jax.make_jaxpr``, always through a fresh function: ``make_jaxpr`` itself caches traces
by function identity), and two traces are the same program when their jaxprs print the
same and hold the same opaque parts (``program_key``). Nothing is keyed by the identity
of the user's function. Three forms:

- ``trace_program`` / ``Program`` (``agop``): traced at every call, what the function
  closes over read then, its arrays passed as arguments;
- ``StaticFunction`` (a feature map): a static argument made at each use, its key read
  when made;
- ``ElementwiseProgram`` (a radial profile, part of a kernel value): read once, when the
  value is made, and evaluated as those programs from then on.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np


class Program:
    """A user's function as the program it traces to: ``(consts, x, *leaves) -> (C,)``.

    The function is traced afresh at every call (``jax.make_jaxpr``): whatever it closes
    over (a module's weights, arrays, Python numbers) is read then, the arrays passed as
    the argument ``consts`` instead of being baked into a compiled program. Two programs
    are equal when their jaxprs print the same and hold the same opaque parts (custom
    derivative rules, nested constants), so one compiled program serves every value of
    the closed-over arrays; nothing is keyed by the identity of the user's function.
    """

    def __init__(self, jaxpr, key):
        self.jaxpr, self.key = jaxpr, key

    def __eq__(self, other):
        return isinstance(other, Program) and self.key == other.key

    def __hash__(self):
        return hash(self.key)

    def __call__(self, consts, x, *leaves):
        from jax.extend.core import ClosedJaxpr, jaxpr_as_fun

        out = jaxpr_as_fun(ClosedJaxpr(self.jaxpr, list(consts)))(x, *leaves)
        return out[0]


class _Unique:
    """A key part equal only to itself: a program that holds nested constants is never
    shared (its values are part of the compiled program)."""


def program_key(jaxpr) -> tuple:
    """What makes two traced programs the same: the jaxpr's text, and the parts the text
    does not show in full: opaque parameters (custom derivative rules, compared as
    objects), array literals (by value), and nested constants (never equal)."""
    from jax.extend.core import ClosedJaxpr, Jaxpr, Literal

    parts: list = []

    def visit(param):
        if isinstance(param, ClosedJaxpr):
            if param.consts:
                parts.append(_Unique())
            walk(param.jaxpr)
        elif isinstance(param, Jaxpr):
            walk(param)
        elif isinstance(param, tuple | list):
            for item in param:
                visit(item)
        elif callable(param):
            parts.append(param)

    def walk(j):
        for eqn in j.eqns:
            for var in eqn.invars:
                if isinstance(var, Literal) and np.ndim(var.val) > 0:
                    parts.append(("literal", np.asarray(var.val).tobytes()))
            for param in eqn.params.values():
                visit(param)

    walk(jaxpr)
    return str(jaxpr), tuple(parts)


def trace_program(f: Callable, x, args: tuple) -> tuple[Program, list, list]:
    """``(program, consts, leaves)``: ``f(x, *args)`` traced at ``x``'s shape (a
    ``ShapeDtypeStruct`` or an array), with ``program(consts, x, *leaves)`` its output."""
    leaves, treedef = jax.tree.flatten(args)

    def flat(x, *leaves):  # a new function per call: make_jaxpr caches traces by function
        return f(x, *jax.tree.unflatten(treedef, leaves))

    closed = jax.make_jaxpr(flat)(x, *leaves)
    if len(closed.out_avals) != 1:
        raise ValueError(f"f must return one array per example; it returns "
                         f"{len(closed.out_avals)} arrays.")
    return Program(closed.jaxpr, program_key(closed.jaxpr)), list(closed.consts), leaves


def function_key(fn: Callable, *examples: jax.ShapeDtypeStruct) -> tuple:
    """The key of the program ``fn`` traces to at ``examples``, re-traced at each call (a
    number ``fn`` closes over is read then), or ``ValueError`` when it closes over arrays,
    whose values no key can hold."""
    closed = jax.make_jaxpr(lambda *args: fn(*args))(*examples)  # fresh: no trace cache
    if closed.consts:
        name = getattr(fn, "__name__", type(fn).__name__)
        raise ValueError(f"{name} must not close over arrays (their values would be fixed at "
                         "its first compilation): write numbers into it, or pass arrays as "
                         "arguments where the function takes them.")
    return program_key(closed.jaxpr)


class StaticFunction:
    """A user's function as a static argument of a jitted function, made at each use:
    equal to another when both traced to the same program at ``example`` when made
    (``function_key``), so neither its identity nor a stale closure decides which
    compiled program runs."""

    def __init__(self, fn: Callable, example: jax.ShapeDtypeStruct):
        self.fn = fn
        # read now: a key that changed while a cache holds it would break the cache (a
        # value is made at each use, just before the call that traces it)
        self.key = function_key(fn, example)

    def __eq__(self, other):
        return isinstance(other, StaticFunction) and self.key == other.key

    def __hash__(self):
        return hash(self.key)

    def __call__(self, *args):
        return self.fn(*args)


class ElementwiseProgram:
    """A scalar function ``phi(t)``, applied elementwise, frozen as the programs it traces
    to at a float32 and a float64 scalar **when it is made**: what it closes over is read
    once, then, and the value compares (and hashes) by those programs, so a jit cache can
    neither mix programs of two readings nor key on the function's identity. Arrays it
    closes over are refused (``ValueError``). Inputs of other float dtypes run through the
    float32 program."""

    def __init__(self, fn: Callable, name: str):
        from jax.extend.core import jaxpr_as_fun

        self.name = name
        self._programs = {}
        keys = []
        for dtype in (np.float32, np.float64):
            with jax.enable_x64(dtype == np.float64):
                closed = jax.make_jaxpr(lambda t: fn(t))(jax.ShapeDtypeStruct((), dtype))
            if closed.consts:
                raise ValueError(f"{name} must not close over arrays (their values would be "
                                 "fixed when it is made): write numbers into it, or use the "
                                 "kernel's bandwidth and metric.")
            if len(closed.out_avals) != 1 or closed.out_avals[0].shape != ():
                raise ValueError(f"{name} must map a scalar to one scalar.")
            self._programs[np.dtype(dtype)] = jaxpr_as_fun(closed)
            keys.append(program_key(closed.jaxpr))
        self.key = tuple(keys)

    def __eq__(self, other):
        return isinstance(other, ElementwiseProgram) and self.key == other.key

    def __hash__(self):
        return hash(self.key)

    def __call__(self, t):
        import jax.numpy as jnp

        t = jnp.asarray(t)
        program_dtype = np.dtype(np.float64) if t.dtype == np.float64 else np.dtype(np.float32)
        program = self._programs[program_dtype]
        flat = jax.vmap(lambda s: program(s)[0])(t.reshape(-1).astype(program_dtype))
        return flat.reshape(t.shape).astype(t.dtype)
