"""Streaming class statistics: batch updates, merges over devices, and the metrics from them,
against float64 references written here."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from tolerances import F32, F64, ROUNDING

from dnc_jax import class_statistics as cs
from dnc_jax import collapse_metrics


def reference(H, y, C):
    """Per-class counts, means and sums of squared deviations, float64 loops over classes."""
    H = np.asarray(H, np.float64)
    counts = np.array([np.sum(y == c) for c in range(C)], np.float64)
    means = np.stack([H[y == c].mean(axis=0) for c in range(C)])
    m2 = np.array([np.sum((H[y == c] - means[c]) ** 2) for c in range(C)])
    return counts, means, m2


def problem(rng, n, C, d, offset=0.0, dtype=np.float32):
    y = np.concatenate([np.arange(C), rng.integers(0, C, n - C)])
    H = rng.normal(size=(n, d)) + 3 * rng.normal(size=(C, d))[y] + offset
    return H.astype(dtype), y.astype(np.int32)


def assert_statistics(stats, H, y, tol):
    counts, means, m2 = reference(H, y, stats.num_classes)
    np.testing.assert_array_equal(np.asarray(stats.counts), counts)
    scale = np.abs(means).max()
    np.testing.assert_allclose(np.asarray(stats.means, np.float64), means, rtol=0, atol=tol * scale)
    np.testing.assert_allclose(np.asarray(stats.m2, np.float64), m2, rtol=tol)
    assert bool(stats.valid)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_batch_updates_equal_the_float64_statistics(rng, dtype, x64):
    H, y = problem(rng, 300, 6, 5, offset=20.0, dtype=dtype)
    stats = cs.ClassStatistics.zeros(6, 5, dtype)
    update = jax.jit(cs.update)
    for start in range(0, 300, 41):  # uneven batches; one padding row per batch
        Hb = np.concatenate([H[start:start + 41], np.full((1, 5), 1e6, dtype)])
        yb = np.concatenate([y[start:start + 41], [-1]]).astype(np.int32)
        stats = update(stats, Hb, yb)
    # float64 exact to rounding; float32 through ~8 running means of offset-20 rows
    assert_statistics(stats, H, y, ROUNDING[dtype])


def test_merge_is_the_union_in_any_order(rng):
    H, y = problem(rng, 200, 4, 3)
    empty = cs.ClassStatistics.zeros(4, 3)
    a, b, c = (cs.update(empty, H[s], y[s]) for s in (slice(0, 50), slice(50, 120), slice(120, 200)))
    left, right = cs.merge(cs.merge(a, b), c), cs.merge(a, cs.merge(c, b))
    for x, z in zip(left, right, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(z), rtol=ROUNDING[F32], atol=1e-6)
    assert_statistics(left, H, y, ROUNDING[F32])
    # an empty accumulator is the identity
    same = cs.merge(empty, left)
    np.testing.assert_array_equal(np.asarray(same.means), np.asarray(left.means))


def test_ten_updates_on_each_of_four_devices_merged_equal_one_pass(rng):
    devices = np.array(jax.devices()[:4])
    assert len(devices) == 4
    mesh = jax.sharding.Mesh(devices, ("d",))
    C, d, per_batch = 5, 6, 16
    H, y = problem(rng, 4 * 10 * per_batch, C, d, offset=5.0)
    Hs = H.reshape(4, 10, per_batch, d)
    ys = y.reshape(4, 10, per_batch)

    def local(Hd, yd):  # this device's 10 batches, then the merge across devices
        def step(stats, batch):
            return cs.update(stats, *batch), None

        stats, _ = jax.lax.scan(step, cs.ClassStatistics.zeros(C, d), (Hd[0], yd[0]))
        return cs.merge_over(stats, "d")

    merged = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P("d"), P("d")),
                                   out_specs=P(), check_vma=False))(Hs, ys)
    one_pass = cs.update(cs.ClassStatistics.zeros(C, d), H, y)
    np.testing.assert_array_equal(np.asarray(merged.counts), np.asarray(one_pass.counts))
    for x, z in ((merged.means, one_pass.means), (merged.m2, one_pass.m2)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(z), rtol=ROUNDING[F32], atol=1e-5)
    assert_statistics(merged, H, y, ROUNDING[F32])


def test_metrics_from_statistics_equal_collapse_metrics(rng):
    H, y = problem(rng, 240, 5, 8)
    W = rng.normal(size=(5, 8))
    preds = np.where(rng.random(240) < 0.2, (y + 1) % 5, y).astype(np.int32)
    stats, res = cs.ClassStatistics.zeros(5, 8), None
    for start in range(0, 240, 60):
        stats = cs.update(stats, H[start:start + 60], y[start:start + 60])
    res = cs.residual_pass(stats)
    for start in range(0, 240, 60):
        res = cs.update_residuals(res, H[start:start + 60], y[start:start + 60], preds[start:start + 60])
    got = cs.metrics(stats, res, classifier=W, with_predictions=True)
    want = collapse_metrics(H, y, classifier=W, predictions=preds)
    for field in want._fields:
        assert getattr(got, field) == pytest.approx(getattr(want, field), rel=1e-4), field
    one_pass = cs.metrics(stats)
    assert np.isnan(one_pass.nc1_pinv) and np.isnan(one_pass.ncc_accuracy)
    assert one_pass.nc1_pinv_rank == -1 and one_pass.nc1 == pytest.approx(want.nc1, rel=1e-4)


def test_invalid_rows_are_remembered_and_refused(rng):
    H, y = problem(rng, 40, 3, 2)
    stats = cs.update(cs.ClassStatistics.zeros(3, 2), H, y)
    bad_label = jax.jit(cs.update)(stats, H[:4], np.array([0, 1, 3, 2], np.int32))
    assert not bool(bad_label.valid)
    with pytest.raises(ValueError, match="label outside"):
        cs.metrics(bad_label)
    nan_row = cs.update(stats, np.where(np.arange(4)[:, None] == 2, np.nan, H[:4]), y[:4])
    with pytest.raises(ValueError, match="non-finite"):
        cs.metrics(nan_row)
    # a NaN in a padding row is no data: it is skipped
    padded = cs.update(stats, np.full((2, 2), np.nan, np.float32), np.array([-1, -1], np.int32))
    assert bool(padded.valid)
    with pytest.raises(ValueError, match=r"Classes \[2\] have no rows"):
        cs.metrics(cs.update(cs.ClassStatistics.zeros(3, 2), H[y < 2], y[y < 2]))


def test_thirty_thousand_classes_in_memory_linear_in_classes(rng):
    """C = 30,000 (a language model's vocabulary): the accumulator is ``C (d + 2)`` numbers
    and one update's compiled working memory stays within a few copies of the ``(C, d)``
    means plus the batch, never ``b x C`` (a one-hot) or ``C x C``."""
    C, d, b = 30_000, 8, 4096
    stats = cs.ClassStatistics.zeros(C, d)
    update = jax.jit(cs.update)
    H = rng.normal(size=(3 * b, d)).astype(np.float32)
    y = rng.integers(0, C, 3 * b).astype(np.int32)
    compiled = update.lower(stats, H[:b], y[:b]).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes
    bound = 3 * 4 * (C * d + b * d + C + b)  # the batch's means, its residuals, the merge
    assert temp <= bound, (temp, bound)
    assert temp < 4 * b * C // 4  # far below one float32 one-hot of the batch
    for start in range(0, 3 * b, b):
        stats = update(stats, H[start:start + b], y[start:start + b])
    counts = np.bincount(y, minlength=C)
    np.testing.assert_array_equal(np.asarray(stats.counts), counts)
    sums = np.zeros((C, d))
    np.add.at(sums, y, H.astype(np.float64))
    seen = counts > 0
    np.testing.assert_allclose(np.asarray(stats.means, np.float64)[seen],
                               sums[seen] / counts[seen, None], rtol=0, atol=1e-5)


def test_counts_stay_exact_past_float32s_integers():
    """2^24 + 1 is the first integer float32 cannot hold: counts are int32."""
    big = cs.ClassStatistics(jnp.asarray([2**24, 0], jnp.int32), jnp.zeros((2, 1)),
                             jnp.zeros(2), jnp.asarray(True))
    one_more = cs.update(big, np.ones((1, 1), np.float32), np.array([0], np.int32))
    assert int(one_more.counts[0]) == 2**24 + 1
    assert float(one_more.means[0, 0]) == pytest.approx(1 / (2**24 + 1), rel=1e-6)


def test_wrong_shapes_are_refused_eagerly_and_under_jit(rng):
    H, y = problem(rng, 20, 3, 2)
    stats = cs.ClassStatistics.zeros(3, 2)
    for update in (cs.update, jax.jit(cs.update)):
        with pytest.raises(ValueError, match="features have 3 columns"):
            update(stats, np.ones((4, 3), np.float32), y[:4])
        with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
            update(stats, H[:4], y[:5])
