"""Row-block helpers: map a function over fixed-size row blocks, or sum it over row chunks,
with bounded memory and static shapes (so nothing recompiles per call).

Both pad the last block instead of running a smaller one, so that every row goes through
the same block computation, with the same shapes and reduction order, whatever else shares
its batch: a row's output is the same alone, in a batch of 7 or in the whole set (tested
bit for bit in ``tests/test_predictor.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def pad_rows(arrays: tuple, multiple: int) -> tuple[tuple, jax.Array]:
    """Arrays (equal row counts ``n``) padded by repeating their last row up to a multiple
    of ``multiple`` rows, and the ``(n_pad,)`` weights that are 1 on real rows, 0 on padding."""
    n = arrays[0].shape[0]
    pad = -n % multiple
    padded = tuple(jnp.pad(a, ((0, pad),) + ((0, 0),) * (a.ndim - 1), mode="edge") if pad else a
                   for a in arrays)
    dtype = next((a.dtype for a in arrays if jnp.issubdtype(a.dtype, jnp.floating)), jnp.float32)
    return padded, (jnp.arange(n + pad) < n).astype(dtype)


def even_batch(n: int, batch_size: int) -> int:
    """The batch that splits ``n`` rows as evenly as ``batch_size`` allows: as many batches
    as ``batch_size`` needs (``ceil(n / batch_size)``), of ``ceil(n / batches)`` rows each,
    so that padding the last one adds fewer rows than there are batches (5,000 rows in
    batches of 2,000: 3 of 1,667, one padding row, not 3 of 2,000 with 1,000 thrown away)."""
    if n <= 0:
        return int(batch_size)
    batches = -(-n // int(batch_size))
    return -(-n // batches)


def map_row_blocks(fn: Callable, X: jax.Array, block_size: int | None):
    """Apply ``fn`` to blocks of exactly ``block_size`` rows of ``X`` and stack the results.

    ``fn`` maps a ``(block_size, d)`` block to a pytree of arrays with leading dimension
    ``block_size``. Memory of the intermediates is bounded by one block. The last block
    (or a batch smaller than one block) is padded by repeating the last row, and the padding
    is cut off again. The blocks run in a ``scan`` with one more step than blocks (a block
    of padding): a loop known to run once would be inlined and optimised together with its
    surroundings (and a loop-invariant block hoisted out), so the scan body, the one
    program every block goes through, is compiled alike whatever the batch, and a row's
    output does not depend on its batch. Differentiable (``scan``). ``block_size=None``
    applies ``fn`` to all of ``X`` at once.
    """
    n = X.shape[0]
    if block_size is None or n == 0:
        return fn(X)
    num_blocks = -(-n // block_size) + 1
    (padded,), _ = pad_rows((X,), num_blocks * block_size)
    _, out = jax.lax.scan(lambda carry, Xb: (carry, fn(Xb)), None,  # type: ignore[arg-type]
                          padded.reshape(num_blocks, block_size, *X.shape[1:]))
    return jax.tree.map(lambda o: o.reshape(num_blocks * block_size, *o.shape[2:])[:n], out)


def fill_row_blocks(out: jax.Array, fn: Callable, X: jax.Array, block_size: int | None,
                    column=0) -> jax.Array:
    """``out`` with ``fn(X)`` (``(n, m)``) written into its rows ``0 .. n`` and columns
    ``column .. column + m``, one block of ``block_size`` rows at a time.

    Unlike ``map_row_blocks`` it builds no stacked copy: the blocks are written in place
    into ``out`` (a ``fori_loop`` carry), so a matrix the size of ``out`` is held once, plus
    one block. The last block starts at ``n - block_size`` (it overlaps the one before and
    rewrites those rows with the same values), so every block has the same static shape
    and no padding is needed. ``column`` may be traced. Traceable: it runs under ``jit``
    (its test) and ``vmap``; the loop has a static trip count, so it is differentiable.
    """
    n = X.shape[0]
    column = jnp.asarray(column, jnp.int32)
    if block_size is None or block_size >= n:
        return jax.lax.dynamic_update_slice(out, fn(X).astype(out.dtype), (jnp.int32(0), column))
    num_blocks = -(-n // block_size)

    def body(i, acc):
        start = jnp.minimum(i * block_size, n - block_size).astype(jnp.int32)
        block = fn(jax.lax.dynamic_slice_in_dim(X, start, block_size))
        return jax.lax.dynamic_update_slice(acc, block.astype(acc.dtype), (start, column))

    return jax.lax.fori_loop(0, num_blocks, body, out)


def row_chunk_sum(fn, arrays: tuple, chunk: int):
    """``sum_k fn(*chunk_k)`` over row chunks of ``arrays`` (equal row counts), without copies.

    Full chunks run in a ``fori_loop`` over ``dynamic_slice``s; the remainder is one more call.
    For sums of per-row terms that must not depend on the batch, pad first (``pad_rows``)
    and weight the padding out.
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
