"""Row sharding over devices: the data mesh, padded row layouts, and the ring of shards.

Data rows live on the ``"data"`` axis of a ``jax.sharding.Mesh`` (DESIGN.md, Scale).
``shard_map`` needs equal shards, so an array of ``n`` rows is padded with zero rows to
``n_padded``, a multiple of the device count; the padding sits at the end, and every
sharded computation masks it out with ``row_mask``. Small ``d x d`` and ``C x C``
algebra is replicated.

Pairwise work between two row-sharded sets (a kernel matrix-vector product, the
gradients of a predictor whose centres are the sharded training rows) runs as a ring:
each device keeps its own rows and the other set's shards travel around the devices by
``ppermute``, one step per device, so no device ever holds more than one shard of either
set (``ring_sum``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from dnc_jax.blocks import map_row_blocks

DATA = "data"
ROWS = P(DATA)
REPLICATED = P()


def data_mesh(devices: str | int | list | None = None) -> Mesh:
    """A one-axis mesh named ``"data"``.

    Host-side: call it outside ``jit``.

    Args:
      devices: ``None`` or ``1`` for the first device, ``"all"`` for every device of every
        process (``jax.devices()``), an int ``k`` for the first ``k`` devices, or a list
        of devices.
    """
    every = jax.devices()
    if devices is None:
        chosen = every[:1]
    elif isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"devices must be 'all', a count or a list; got {devices!r}.")
        chosen = every
    elif isinstance(devices, int | np.integer):
        if not 1 <= int(devices) <= len(every):
            raise ValueError(f"devices={devices}, but {len(every)} devices are available.")
        chosen = every[: int(devices)]
    else:
        chosen = list(devices)
        if not chosen:
            raise ValueError("devices is an empty list.")
    return Mesh(np.array(chosen), (DATA,))


def check_mesh(mesh: Mesh | None) -> Mesh:
    """``mesh``, or the one-device mesh when ``None``; raise ``ValueError`` on a bad mesh."""
    if mesh is None:
        return data_mesh()
    if not isinstance(mesh, Mesh):
        raise ValueError(f"mesh must be a jax.sharding.Mesh; got {type(mesh).__name__}.")
    if mesh.axis_names != (DATA,):
        raise ValueError(
            f"mesh must have exactly one axis named {DATA!r} (see dnc_jax.sharding.data_mesh); "
            f"got axes {mesh.axis_names}."
        )
    return mesh


def num_shards(mesh: Mesh) -> int:
    """The number of devices along the mesh's ``"data"`` axis."""
    return int(mesh.shape[DATA])


def padded_rows(n: int, mesh: Mesh) -> int:
    """The smallest multiple of the device count that is ``>= n``."""
    p = num_shards(mesh)
    return -(-n // p) * p


def put_rows(X, mesh: Mesh, *, fill=0) -> jax.Array:
    """``X`` (``n`` rows, numpy or JAX) padded with ``fill`` rows to ``padded_rows(n)`` and
    row-sharded over ``mesh``. An array already in that layout is returned as it is.

    In a multi-process run, pass the global array: each process puts its own shards
    (use ``put_local_rows`` when each process loads only its own rows).
    """
    n = X.shape[0]
    sharding = NamedSharding(mesh, P(DATA, *([None] * (X.ndim - 1))))
    pad = padded_rows(n, mesh) - n
    if isinstance(X, jax.Array):
        if pad:
            X = jnp.concatenate([X, jnp.full((pad, *X.shape[1:]), fill, dtype=X.dtype)])
        return X if X.sharding == sharding else jax.device_put(X, sharding)
    Xn = np.asarray(X)
    if pad:
        Xn = np.concatenate([Xn, np.full((pad, *Xn.shape[1:]), fill, dtype=Xn.dtype)])
    return jax.make_array_from_callback(Xn.shape, sharding, lambda idx: Xn[idx])


def put_local_rows(X_local: np.ndarray, mesh: Mesh, n_global: int) -> jax.Array:
    """Assemble a row-sharded global array from each process's own rows.

    Process ``k`` of ``P`` passes its block of ``n_padded / P`` consecutive rows (rows
    past ``n_global`` already filled with zeros), in process order; see
    ``local_row_range``.
    """
    shape = (padded_rows(n_global, mesh), *X_local.shape[1:])
    sharding = NamedSharding(mesh, P(DATA, *([None] * (X_local.ndim - 1))))
    return jax.make_array_from_process_local_data(sharding, X_local, shape)


def local_row_range(n_global: int, mesh: Mesh) -> tuple[int, int]:
    """``(start, stop)`` of this process's rows in the padded global array."""
    rows = padded_rows(n_global, mesh) // jax.process_count()
    start = jax.process_index() * rows
    return start, start + rows


def local_block(X: jax.Array) -> np.ndarray:
    """This process's rows of a row-sharded array, in order: the block ``put_local_rows``
    takes (rows ``local_row_range`` of the padded array)."""
    shards = {s.index[0].start or 0: s for s in X.addressable_shards}  # one per row block
    return np.concatenate([np.asarray(shards[start].data) for start in sorted(shards)])


def replicate(x, mesh: Mesh) -> jax.Array:
    """``x`` placed whole on every device of ``mesh``."""
    return jax.device_put(x, NamedSharding(mesh, REPLICATED))


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


def as_rows(X, mesh: Mesh, *, dtype=None, fill=0) -> Rows:
    """``X`` as ``Rows`` on ``mesh``: a ``Rows`` already there is returned unchanged.

    Host-side placement onto devices: call it outside ``jit``.
    """
    if isinstance(X, Rows):
        if X.mesh != mesh:
            raise ValueError("The rows live on a different mesh from the one passed.")
        return X if dtype is None or X.dtype == dtype else Rows(X.data.astype(dtype), X.n)
    if dtype is not None:
        X = X.astype(dtype) if isinstance(X, jax.Array) else np.asarray(X, dtype=dtype)
    return Rows(put_rows(X, mesh, fill=fill), int(X.shape[0]))
