"""Placing data on the mesh (the shell): the one-axis data mesh, rows padded to a
multiple of the device count and put on it (``as_rows``, ``put_rows``), each process's
share of a multi-process run, and replicated values.

Data rows live on the ``"data"`` axis of a ``jax.sharding.Mesh`` (DESIGN.md, Scale).
``shard_map`` needs equal shards, so an array of ``n`` rows is padded with zero rows to
``n_padded``, a multiple of the device count; the padding sits at the end. The type the
core takes, ``Rows``, and the collectives over its shards live in ``rows``; this module
re-exports them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from dnc_jax.rows import (
    DATA,
    REPLICATED,
    ROWS,
    RowLayout,
    Rows,
    map_rows,
    num_shards,
    padded_rows,
    ring_fold,
    ring_sum,
    row_mask,
)

__all__ = [
    "DATA",
    "REPLICATED",
    "ROWS",
    "RowLayout",
    "Rows",
    "as_rows",
    "check_mesh",
    "data_mesh",
    "local_block",
    "local_row_range",
    "map_rows",
    "num_shards",
    "padded_rows",
    "put_local_rows",
    "put_rows",
    "replicate",
    "ring_fold",
    "ring_sum",
    "row_mask",
]


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
