"""Streaming class statistics: what every collapse metric needs, accumulated batch by batch.

A ``ClassStatistics`` is a pytree of per-class counts, means and sums of squared
deviations from the class mean (``m2``), plus one flag saying whether every row seen so far
was valid. It is built without ever holding all the features: ``update(stats, H, y)`` folds
one batch in, ``merge(a, b)`` joins two accumulators (batches, devices, hosts), and
``merge_over(stats, axis_name)`` joins the accumulators of every device inside
``shard_map`` / ``pmap`` with collectives. Memory is ``O(C d)`` whatever the number of rows,
so it serves the ~30,000 token classes of a language model's vocabulary.

The merge is Chan, Golub and LeVeque's pairwise update (1979), exact in exact arithmetic and
free of the cancellation of ``sum ||h||^2 - n ||mu||^2``: with ``delta = mu_b - mu_a``,

    n = n_a + n_b,    mu = mu_a + delta n_b / n,    m2 = m2_a + m2_b + ||delta||^2 n_a n_b / n,

per class. All three functions are pure and traceable (``jit``, ``vmap``, ``scan``); rows
labelled ``-1`` are padding and add nothing; a label outside ``-1..C-1`` or a non-finite row
clears ``stats.valid``, after which the metrics refuse (eagerly) the statistics.

``nc1_pinv`` and the nearest-class-centre agreement need each row against the final class
means, so they take a second pass: ``residual_pass(stats)`` starts a ``ResidualStatistics``
that ``update_residuals`` folds batches into (merged by plain addition). ``metrics(stats,
residuals)`` gives ``CollapseMetrics`` through the same float64 formulas as
``collapse_metrics``; without the second pass ``nc1_pinv`` and ``ncc_accuracy`` are NaN
(and ``nc1_pinv_rank`` -1): never a number from part of the data.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from dnc_jax.collapse import (
    CollapseMetrics,
    _ClassStatistics,
    _metrics,
    check_class_counts,
    check_class_means,
    pinv_projection,
    residual_sums,
)


class ClassStatistics(NamedTuple):
    """Per-class ``counts`` (``(C,)`` int32: exact, where float32 stops counting at 2^24),
    ``means`` (``(C, d)``) and ``m2`` (``(C,)``, the sum over the class's rows of
    ``||h_i - mu_c||^2``) in the features' dtype, and ``valid``
    (``()`` bool: every label so far in ``-1..C-1`` and every labelled row finite)."""

    counts: jax.Array
    means: jax.Array
    m2: jax.Array
    valid: jax.Array

    @classmethod
    def zeros(cls, num_classes: int, dim: int, dtype=jnp.float32) -> ClassStatistics:
        """The empty accumulator for ``num_classes`` classes of ``dim`` features."""
        if int(num_classes) < 1 or int(dim) < 1:
            raise ValueError(f"num_classes and dim must be positive; got {num_classes}, {dim}.")
        C, d = int(num_classes), int(dim)
        return cls(jnp.zeros(C, jnp.int32), jnp.zeros((C, d), dtype), jnp.zeros(C, dtype),
                   jnp.asarray(True))

    @property
    def num_classes(self) -> int:
        return self.means.shape[-2]

    @property
    def variances(self) -> jax.Array:
        """Per-class mean squared distance to the class mean, ``m2 / counts`` (``(C,)``)."""
        return self.m2 / jnp.maximum(self.counts, 1).astype(self.m2.dtype)

    @property
    def global_mean(self) -> jax.Array:
        """``mu_G``, the plain mean of the class means (``(d,)``), as ``collapse_metrics``."""
        return jnp.mean(self.means, axis=-2)

    def update(self, H: ArrayLike, y: ArrayLike) -> ClassStatistics:
        """``update(self, H, y)``: these statistics with one batch folded in."""
        return update(self, H, y)

    def merge(self, other: ClassStatistics) -> ClassStatistics:
        """``merge(self, other)``: the statistics of both sets of rows."""
        return merge(self, other)


def _combine(n_a, mu_a, m2_a, n_b, mu_b, m2_b):
    """Chan et al.'s pairwise combination, per class (module docstring); counts are int32."""
    n = n_a + n_b
    dtype = mu_a.dtype
    share = jnp.where(n > 0, n_b.astype(dtype) / jnp.maximum(n, 1).astype(dtype), 0)
    delta = mu_b - mu_a
    mean = mu_a + delta * share[:, None]
    m2 = m2_a + m2_b + jnp.sum(delta * delta, axis=1) * n_a.astype(dtype) * share
    return n, mean, m2


@jax.jit
def merge(a: ClassStatistics, b: ClassStatistics) -> ClassStatistics:
    """The statistics of the union of the rows ``a`` and ``b`` were built from."""
    n, mean, m2 = _combine(a.counts, a.means, a.m2, b.counts, b.means, b.m2)
    return ClassStatistics(n, mean, m2, a.valid & b.valid)


@jax.jit
def update(stats: ClassStatistics, H: ArrayLike, y: ArrayLike) -> ClassStatistics:
    """``stats`` with one batch folded in.

    Args:
      stats: the accumulator so far.
      H: ``(b, d)`` features (or ``(b, *shape)``, flattened per row); y: ``(b,)`` integer
        labels in ``0..C-1``, ``-1`` for padding rows.

    Cost ``O(b d + C d)`` (segment sums; no ``b x C`` one-hot).
    """
    H = jnp.asarray(H)
    H = H.reshape(H.shape[0], -1).astype(stats.means.dtype)
    y = jnp.asarray(y).astype(jnp.int32)
    if y.shape != (H.shape[0],):
        raise ValueError(f"labels must have shape ({H.shape[0]},); got {y.shape}.")
    if H.shape[1] != stats.means.shape[1]:
        raise ValueError(f"features have {H.shape[1]} columns but the statistics "
                         f"{stats.means.shape[1]}.")
    C = stats.num_classes
    labelled = (y >= 0) & (y < C)
    ok = jnp.all((y >= -1) & (y < C)) & jnp.all(jnp.isfinite(H) | ~labelled[:, None])
    seg = jnp.where(labelled, y, 0)
    counts = jax.ops.segment_sum(labelled.astype(jnp.int32), seg, num_segments=C)
    H0 = jnp.where(labelled[:, None], H, 0)
    sums = jax.ops.segment_sum(H0, seg, num_segments=C)
    means = sums / jnp.maximum(counts, 1).astype(H.dtype)[:, None]
    R = jnp.where(labelled[:, None], H0 - means[seg], 0)
    m2 = jax.ops.segment_sum(jnp.sum(R * R, axis=1), seg, num_segments=C)
    return merge(stats, ClassStatistics(counts, means, m2, ok))


def merge_over(stats: ClassStatistics, axis_name) -> ClassStatistics:
    """Merge every device's statistics along ``axis_name`` (inside ``shard_map`` or
    ``pmap``; across hosts the same collectives span processes): ``n = sum n_k``,
    ``mu = sum n_k mu_k / n``, ``m2 = sum (m2_k + n_k ||mu_k - mu||^2)``."""
    n = jax.lax.psum(stats.counts, axis_name)
    dtype = stats.means.dtype
    count = stats.counts.astype(dtype)
    inv = jnp.where(n > 0, 1 / jnp.maximum(n, 1).astype(dtype), 0)
    mean = jax.lax.psum(stats.means * count[:, None], axis_name) * inv[:, None]
    spread = jnp.sum((stats.means - mean) ** 2, axis=1) * count
    m2 = jax.lax.psum(stats.m2 + spread, axis_name)
    valid = jax.lax.pmin(stats.valid.astype(jnp.int32), axis_name) > 0
    return ClassStatistics(n, mean, m2, valid)


class ResidualStatistics(NamedTuple):
    """The second pass against fixed class means: ``pinv_sq`` (``sum_i ||S_r^-1 V_r^T (h_i -
    mu_{y_i})||^2``), nearest-class-centre ``hits`` and ``mismatches`` with the predictions,
    and the fixed ``ref`` (``(1, d)``), ``shifted`` means (``(C, d)``, ``mu_c - ref``) and
    ``projection`` (``(d, C)``) with its ``rank``. Merged by adding the three sums."""

    pinv_sq: jax.Array
    hits: jax.Array
    mismatches: jax.Array
    ref: jax.Array
    shifted: jax.Array
    projection: jax.Array
    rank: jax.Array


def residual_pass(stats: ClassStatistics, *, rtol: float | None = None) -> ResidualStatistics:
    """An empty second pass against ``stats``' class means (``rtol`` as in
    ``collapse_metrics``: the rank cut of ``Sigma_B``). Eager: the SVD runs in float64."""
    means = np.asarray(stats.means, np.float64)
    centred = means - means.mean(axis=0)
    proj, rank = pinv_projection(centred, stats.means.dtype, rtol)
    dtype = stats.means.dtype
    ref = means.mean(axis=0, keepdims=True)
    zero = jnp.zeros((), dtype)
    return ResidualStatistics(zero, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32),
                              jnp.asarray(ref, dtype), jnp.asarray(means - ref, dtype),
                              jnp.asarray(proj, dtype), jnp.asarray(rank))


@jax.jit
def update_residuals(res: ResidualStatistics, H: ArrayLike, y: ArrayLike,
                     predictions: ArrayLike | None = None) -> ResidualStatistics:
    """``res`` with one batch folded in (``H``, ``y`` as in ``update``; ``predictions``:
    ``(b,)`` predicted labels for the mismatch count, default the labels)."""
    H = jnp.asarray(H)
    H = H.reshape(H.shape[0], -1).astype(res.shifted.dtype)
    y = jnp.asarray(y).astype(jnp.int32)
    preds = y if predictions is None else jnp.asarray(predictions).astype(jnp.int32)
    _, pinv_sq, hits, miss = residual_sums(H, y, preds, res.ref, res.shifted, res.projection)
    return res._replace(pinv_sq=res.pinv_sq + pinv_sq, hits=res.hits + hits,
                        mismatches=res.mismatches + miss)


def metrics(stats: ClassStatistics, residuals: ResidualStatistics | None = None, *,
            classifier: ArrayLike | None = None,
            with_predictions: bool = False) -> CollapseMetrics:
    """``CollapseMetrics`` from the statistics (the ``collapse_metrics`` formulas, float64
    ``C x C`` algebra: for tens of thousands of classes use ``collapse_toolkit``'s tiled
    metrics on ``stats.means`` and ``stats.variances`` instead). Eager.

    ``residuals``: the second pass (``nc1_pinv``, ``ncc_accuracy``, and ``ncc_mismatch``
    when ``with_predictions``); without it those fields are NaN and the rank -1.

    Raises:
      ValueError: invalid rows were folded in, a class has no rows, fewer than 2
        classes, or every class mean coincides.
    """
    if not bool(stats.valid):
        raise ValueError("The statistics saw a label outside -1..C-1 or a non-finite "
                         "labelled feature row; clean the data and accumulate again.")
    counts = np.asarray(stats.counts, np.float64)
    check_class_counts(counts)
    means = np.asarray(stats.means, np.float64)
    check_class_means(means - means.mean(axis=0))
    W = None
    if classifier is not None:
        W = np.asarray(classifier, np.float64)
        if W.shape != means.shape:
            raise ValueError(f"classifier must have shape (C, d) = {means.shape}; got {W.shape}.")
    n = int(np.asarray(stats.counts, np.int64).sum())
    if residuals is None:
        second = (float("nan"), -1, float("nan"), float("nan"))
    else:
        second = (float(residuals.pinv_sq), int(residuals.rank), int(residuals.hits),
                  int(residuals.mismatches))
    summary = _ClassStatistics(counts, means, np.zeros(means.shape[1]),
                               np.asarray(stats.m2, np.float64), second[0], second[1],
                               second[2], second[3], n)
    return _metrics(summary, W, with_predictions and residuals is not None)
