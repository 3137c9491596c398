"""Rows on a mesh, the data type the core takes (``Rows``: ``n`` rows padded to a
multiple of the device count and row-sharded over the ``"data"`` axis), and the
collectives over its shards, used inside ``shard_map``.

Every sharded computation masks the padding rows out with ``row_mask``. Pairwise work
between two row-sharded sets (a kernel matrix-vector product, the gradients of a
predictor whose centres are the sharded training rows) runs as a ring: each device keeps
its own rows and the other set's shards travel around the devices by ``ppermute``, one
step per device, so no device ever holds more than one shard of either set
(``ring_sum``). Small ``d x d`` and ``C x C`` algebra is replicated. Placing data on the
mesh is the shell's (``sharding``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from dnc_jax.blocks import map_row_blocks

DATA = "data"
ROWS = P(DATA)
REPLICATED = P()


def num_shards(mesh: Mesh) -> int:
    """The number of devices along the mesh's ``"data"`` axis."""
    return int(mesh.shape[DATA])


def padded_rows(n: int, mesh: Mesh) -> int:
    """The smallest multiple of the device count that is ``>= n``."""
    p = num_shards(mesh)
    return -(-n // p) * p


def row_mask(rows_per_shard: int, n_valid, dtype) -> jax.Array:
    """Inside ``shard_map``: 1 for this shard's real rows, 0 for the padding, ``(rows,)``."""
    start = jax.lax.axis_index(DATA) * rows_per_shard
    return ((start + jnp.arange(rows_per_shard, dtype=start.dtype)) < n_valid).astype(dtype)


def ring_fold(fn: Callable, init, travelling, p: int):
    """Inside ``shard_map``: fold ``acc = fn(acc, shard_j, j)`` over the ``p`` shards of
    ``travelling``, a pytree of this device's shards passed around the ring (device ``i``
    sends to ``i + 1``): at step ``t`` device ``i`` holds the shards of ``j = i - t mod p``,
    and ``fn`` gets ``j`` to index anything laid out by shard. With ``p = 1``, one call.
    """
    me = jax.lax.axis_index(DATA)
    acc = fn(init, travelling, me)
    if p == 1:
        return acc
    perm = [(i, (i + 1) % p) for i in range(p)]

    def step(t, carry):
        acc, shards = carry
        return fn(acc, shards, (me - t.astype(me.dtype)) % p), jax.lax.ppermute(shards, DATA, perm)

    acc, _ = jax.lax.fori_loop(1, p, step, (acc, jax.lax.ppermute(travelling, DATA, perm)))
    return acc


def map_rows(fn: Callable, X: jax.Array, mesh: Mesh, block_size: int, *args):
    """``fn(X_block, *args)`` over fixed-size row blocks of each device's rows of the
    row-sharded ``X`` (``args`` replicated), a pytree of row-sharded outputs. Blocks are
    padded (``blocks.map_row_blocks``): a row's output does not depend on its batch."""
    def local(X_local, *args):
        return map_row_blocks(lambda Xb: fn(Xb, *args), X_local, block_size)

    return jax.shard_map(local, mesh=mesh, in_specs=(ROWS,) + (REPLICATED,) * len(args),
                         out_specs=ROWS, check_vma=False)(X, *args)


def ring_sum(fn: Callable, travelling, p: int):
    """Inside ``shard_map``: ``sum_j fn(shard_j, j)`` over the shards of ``travelling``
    (see ``ring_fold``); no device holds more than one shard of it at a time.

    The ``p`` terms are kept by shard index and added in the order ``j = 0 .. p-1`` (at
    ``p`` times the memory of one term), not in the ring's order, which starts at the
    device's own shard: so a row's result does not depend on the device it lives on."""
    if p == 1:
        return fn(travelling, jax.lax.axis_index(DATA))
    shapes = jax.eval_shape(fn, travelling, jnp.int32(0))
    zeros = jax.tree.map(lambda s: jnp.zeros((p, *s.shape), s.dtype), shapes)
    terms = ring_fold(
        lambda acc, shards, j: jax.tree.map(lambda a, t: a.at[j].set(t), acc, fn(shards, j)),
        zeros, travelling, p)
    return jax.tree.map(lambda t: jnp.sum(t, axis=0), terms)


@dataclasses.dataclass(frozen=True)
class RowLayout:
    """How ``n`` rows are laid out on ``mesh``: ``n_padded`` rows, ``rows_per_shard`` each."""

    mesh: Mesh
    n: int

    @property
    def p(self) -> int:
        return num_shards(self.mesh)

    @property
    def n_padded(self) -> int:
        return padded_rows(self.n, self.mesh)

    @property
    def rows_per_shard(self) -> int:
        return self.n_padded // self.p


@functools.partial(jax.tree_util.register_dataclass, data_fields=["data"], meta_fields=["n"])
@dataclasses.dataclass(frozen=True, eq=False)
class Rows:
    """``n`` rows laid out on a mesh: ``data`` is ``(n_padded, ...)``, row-sharded over the
    ``"data"`` axis, with zero rows after the first ``n`` (see ``put_rows``)."""

    data: jax.Array
    n: int

    @property
    def mesh(self) -> Mesh:
        return self.data.sharding.mesh  # type: ignore[attr-defined]  # a NamedSharding

    @property
    def layout(self) -> RowLayout:
        return RowLayout(self.mesh, self.n)

    @property
    def shape(self) -> tuple:
        return (self.n, *self.data.shape[1:])

    @property
    def dtype(self):
        return self.data.dtype

    def valid(self) -> jax.Array:
        """The ``n`` real rows as one array (this gathers them: for small arrays and tests)."""
        return self.data[: self.n]
