"""Row-block helpers (``dnc_jax.blocks``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dnc_jax.blocks import fill_row_blocks, map_row_blocks, row_chunk_sum


def outer(Xb):
    return jnp.concatenate([Xb * 2.0, Xb.sum(1, keepdims=True)], axis=1)


@pytest.mark.parametrize("n,block", [(10, 3), (12, 4), (5, 8), (7, None), (7, 7)])
def test_fill_row_blocks_writes_fn_of_every_row_in_place(rng, n, block):
    X = jnp.asarray(rng.normal(size=(n, 3)), jnp.float32)
    out = jnp.full((n, 9), -1.0, jnp.float32)
    got = jax.jit(lambda out, X, c: fill_row_blocks(out, outer, X, block, c))(out, X, 2)
    want = np.full((n, 9), -1.0, np.float32)
    want[:, 2:6] = np.asarray(outer(X))
    np.testing.assert_array_equal(np.asarray(got), want)  # same per-row arithmetic, exact


def test_map_row_blocks_and_chunk_sum_cover_every_row_once(rng):
    X = jnp.asarray(rng.normal(size=(11, 3)), jnp.float32)
    np.testing.assert_array_equal(np.asarray(map_row_blocks(outer, X, 4)), np.asarray(outer(X)))
    total = row_chunk_sum(lambda Xc: Xc.sum(0), (X,), 4)
    # float32 sums of 11 terms in two orders: a few ulps of the largest partial sum
    np.testing.assert_allclose(np.asarray(total), np.asarray(X).sum(0), rtol=0, atol=1e-5)


def test_fill_row_blocks_composes_with_vmap_and_grad(rng):
    """Under ``vmap`` each batch member is filled alone; under ``grad`` the derivative of
    the sum of ``out`` with ``fn = 3 x`` written over rows with overlapping last block is 3
    for every entry of ``X`` (each row is written, the overlap rewritten, not added)."""
    X = jnp.asarray(rng.normal(size=(2, 10, 3)), jnp.float32)
    out = jnp.zeros((2, 10, 3), jnp.float32)
    filled = jax.vmap(lambda o, x: fill_row_blocks(o, lambda b: 3.0 * b, x, 4))(out, X)
    np.testing.assert_array_equal(np.asarray(filled), 3.0 * np.asarray(X))
    g = jax.grad(lambda x: fill_row_blocks(out[0], lambda b: 3.0 * b, x, 4).sum())(X[0])
    np.testing.assert_array_equal(np.asarray(g), np.full((10, 3), 3.0, np.float32))


@pytest.mark.parametrize("n,batch", [(5000, 2000), (6000, 2000), (7, 3), (3, 8), (1, 1), (10, 1)])
def test_even_batch_splits_rows_evenly_under_the_cap(n, batch):
    """As many batches as the cap needs, each at most the cap, fewer padding rows than
    batches: 5,000 rows under 2,000 are 3 batches of 1,667 (1 padding row)."""
    from dnc_jax.blocks import even_batch

    b = even_batch(n, batch)
    batches = -(-n // batch)
    assert b <= batch and -(-n // b) == batches and 0 <= batches * b - n < batches
    if (n, batch) == (5000, 2000):
        assert b == 1667
