"""Row-block helpers: map a function over row blocks, or sum it over row chunks, with
bounded memory and static shapes (so nothing recompiles per call)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def map_row_blocks(fn: Callable, X: jax.Array, block_size: int | None):
    """Apply ``fn`` to blocks of ``block_size`` rows of ``X`` and stack the results.

    ``fn`` maps a ``(b, d)`` block to a pytree of arrays with leading dimension ``b``.
    Memory of the intermediates is bounded by one block; the last block is padded by
    repeating the last row, and the padding is cut off again.
    """
    n = X.shape[0]
    if block_size is None or block_size >= n:
        return fn(X)
    num_blocks = -(-n // block_size)
    padded = jnp.pad(X, ((0, num_blocks * block_size - n), (0, 0)), mode="edge")
    out = jax.lax.map(fn, padded.reshape(num_blocks, block_size, X.shape[1]))
    return jax.tree.map(lambda o: o.reshape(num_blocks * block_size, *o.shape[2:])[:n], out)


def row_chunk_sum(fn, arrays: tuple, chunk: int):
    """``sum_k fn(*chunk_k)`` over row chunks of ``arrays`` (equal row counts), without copies.

    Full chunks run in a ``fori_loop`` over ``dynamic_slice``s; the remainder is one more call.
    """
    n = arrays[0].shape[0]
    chunk = min(chunk, n)
    full = n // chunk
    shapes = jax.eval_shape(fn, *(a[:chunk] for a in arrays))
    init = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def body(i, acc):
        parts = (jax.lax.dynamic_slice_in_dim(a, i * chunk, chunk) for a in arrays)
        return jax.tree.map(jnp.add, acc, fn(*parts))

    acc = jax.lax.fori_loop(0, full, body, init)
    if n % chunk:
        acc = jax.tree.map(jnp.add, acc, fn(*(a[full * chunk:] for a in arrays)))
    return acc
