"""Rows on the mesh and the collectives over their shards, on the suite's 4 devices,
against the same sums written out in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np

from dnc_jax.rows import ROWS, Rows, num_shards, padded_rows, ring_fold, ring_sum, row_mask
from dnc_jax.sharding import as_rows, data_mesh


def _per_device(fn, rows: Rows):
    """``fn(local rows)`` on each device, its ``(1, ...)`` outputs stacked by device."""
    return np.asarray(jax.shard_map(fn, mesh=rows.mesh, in_specs=ROWS, out_specs=ROWS)(rows.data))


def test_ring_sum_adds_every_shard_by_its_index_on_every_device():
    mesh = data_mesh("all")
    p = num_shards(mesh)
    X = np.arange(2 * p * 3, dtype=np.float32).reshape(2 * p, 3)
    rows = as_rows(X, mesh)

    def local(x):  # sum_j (j + 1) * (column sums of shard j)
        return ring_sum(lambda s, j: s.sum(axis=0) * (j + 1).astype(s.dtype), x, p)[None]

    want = sum((j + 1) * X[2 * j:2 * j + 2].sum(axis=0) for j in range(p))
    np.testing.assert_array_equal(_per_device(local, rows), np.tile(want, (p, 1)))


def test_ring_fold_visits_the_shards_in_ring_order():
    """Device ``i`` sees shard ``i``, then ``i - 1``, ... (mod ``p``): folding
    ``acc = p acc + j`` spells that order in base ``p``."""
    mesh = data_mesh("all")
    p = num_shards(mesh)
    rows = as_rows(np.zeros((p, 1), np.float32), mesh)

    def local(x):
        order = ring_fold(lambda acc, _, j: acc * p + j, jnp.zeros((), jnp.int32), x, p)
        return order.reshape(1, 1).astype(jnp.float32)

    want = [sum(((i - t) % p) * p ** (p - 1 - t) for t in range(p)) for i in range(p)]
    np.testing.assert_array_equal(_per_device(local, rows)[:, 0], want)


def test_the_padding_is_masked_and_sized_by_the_device_count():
    mesh = data_mesh("all")
    p = num_shards(mesh)
    n = 2 * p - 2  # two padding rows at the end
    assert padded_rows(n, mesh) == 2 * p and padded_rows(2 * p, mesh) == 2 * p
    rows = as_rows(np.ones((n, 1), np.float32), mesh)
    assert rows.data.shape == (2 * p, 1) and rows.shape == (n, 1)

    def local(x):
        return row_mask(x.shape[0], n, jnp.float32)[:, None]

    np.testing.assert_array_equal(_per_device(local, rows)[:, 0], [1.0] * n + [0.0] * 2)
    np.testing.assert_array_equal(np.asarray(rows.data)[n:], 0.0)
