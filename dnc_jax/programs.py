"""A user's function as the program it traces to, compared by that program's text.

Library functions that take a user's function (``agop``'s ``f``, a radial kernel's
profile) must neither bake the values it closes over into a compiled program nor compile
anew at every call. Tracing the function at every call (``jax.make_jaxpr``) reads what it
closes over *then*; its arrays are passed as arguments (``consts``); and two traces are
the same program when their jaxprs print the same and hold the same opaque parts. Nothing
is keyed by the identity of the user's function.
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
