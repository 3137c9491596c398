"""Deep neural collapse metrics (NC1-NC4, CDNV), exact and streaming (DESIGN.md, DNC metrics).

``collapse_metrics`` checks its inputs once and brings both kinds of features to one form
(``_checked_blocks``: an array in row chunks, sharded ``Rows`` whole); two passes of jitted
block functions (``class_sums``, ``residual_sums``) then collect the class statistics
(``_class_statistics``) and the ``C x C`` algebra on them runs in float64 numpy
(``metric_formulas``: the one copy of the formulas, which ``traced_collapse_metrics`` runs
in JAX). No ``d x d`` matrix is ever formed, and numpy features are moved to the device one
chunk at a time, so peak memory is the features plus a chunk.

Numerics: every feature row is first shifted by the first row ``h_0`` (exact in floating
point for nearby values, Sterbenz), so a large common offset costs no precision: float32
features carrying an offset of 1e4 give the float64 answers to ~1e-6.

Conventions, against the codebases people compare with:

- ``nc1`` is the Deep RFM paper's ``tr(Sigma_W) / tr(Sigma_B)`` with
  ``Sigma_W = (1/n) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T``. The official Deep RFM code
  divides ``Sigma_W`` by an extra factor ``C``: its numbers are ours divided by ``C``.
- ``nc1_pinv`` is Papyan et al.'s ``tr(Sigma_W Sigma_B^+) / C``. Their reference code
  reports ``tr(Sigma_W Sigma_B^+)`` without the ``1/C``: its numbers are ours times ``C``.
  Computed as a sum of squares, it is never negative.
- Spreads (``equinorm``, ``equiangularity``) use the population standard deviation
  (``ddof=0``); ``torch.std`` defaults to the unbiased one (``ddof=1``).
- ``mu_G`` is the plain mean of the class means (not the sample mean), as in DESIGN.md.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from dnc_jax import _checks
from dnc_jax.precision import matmul
from dnc_jax.rows import Rows
from dnc_jax.sharding import as_rows

DEFAULT_CHUNK = 4096


# a metric: a Python number eagerly, a JAX scalar under jit / vmap / grad
Number = float | jax.Array
Count = int | jax.Array


class CollapseMetrics(NamedTuple):
    """Collapse metrics of one set of features (a pytree of Python floats).

    Attributes:
      nc1: ``tr(Sigma_W) / tr(Sigma_B)``.
      nc1_pinv: ``tr(Sigma_W Sigma_B^+) / C``; ``nc1_pinv_rank``: rank of ``Sigma_B`` used.
      nc2: mean over all ``C x C`` entries of ``(cos_ij - E_ij)^2``, ``E`` the simplex-ETF Gram.
      nc2_etf: ``|| G/||G||_F - (I - 11^T/C)/sqrt(C-1) ||_F``, ``G`` the centred-means Gram.
      nc2_orthogonal: ``|| G_u/||G_u||_F - I/sqrt(C) ||_F`` on uncentred means.
      equinorm: std / mean of ``||mu_c - mu_G||``.
      equiangularity: std of the off-diagonal cosines of centred means.
      max_angle: mean over pairs of ``|cos_ij + 1/(C-1)|``.
      nc3: ``|| W/||W||_F - Mt/||Mt||_F ||_F^2`` for a given classifier ``W``, else ``None``.
      ncc_accuracy: accuracy of the nearest-class-centre rule against the labels.
      ncc_mismatch: fraction where it differs from given predictions, else ``None``.
      cdnv: mean over class pairs of ``(var_c + var_c') / (2 ||mu_c - mu_c'||^2)``.
      trace_within, trace_between: ``tr(Sigma_W)``, ``tr(Sigma_B)``.
      trace_total: ``(1/n) sum_i ||h_i - mu_G||^2`` (= ``tr(Sigma_W) + tr(Sigma_B)`` when balanced).
      num_classes, num_samples: ``C`` and ``n``.

    In the official scripts' convention (``dmbeaglehole/neural_collapse_rfm`` at eee0604:
    ``Sigma_B /= C`` and ``Sigma_W``, ``Sigma_T /= C n``, ``deep_rfm.py`` lines 171-173,
    ``nc_nn.py`` lines 373-374, ``nc_nn_ratio.py`` lines 277-279), the properties
    ``nc1_official`` (``nc1 / C``), ``within_total_official`` (``tr(Sigma_W)/tr(Sigma_T)``,
    the same in both) and ``between_total_official`` (``C tr(Sigma_B)/tr(Sigma_T)``, the
    ratio ``nc_nn_ratio.py`` plots, line 431); ``to_dict`` includes them.
    """

    nc1: Number
    nc1_pinv: Number
    nc1_pinv_rank: Count
    nc2: Number
    nc2_etf: Number
    nc2_orthogonal: Number
    equinorm: Number
    equiangularity: Number
    max_angle: Number
    nc3: Number | None
    ncc_accuracy: Number
    ncc_mismatch: Number | None
    cdnv: Number
    trace_within: Number
    trace_between: Number
    trace_total: Number
    num_classes: Count
    num_samples: Count

    @property
    def nc1_official(self) -> Number:
        """NC1 as the official scripts compute it: ``nc1 / C`` (class docstring)."""
        return self.nc1 / self.num_classes

    @property
    def within_total_official(self) -> Number:
        """``tr(Sigma_W) / tr(Sigma_T)``: the official value equals ours (class docstring)."""
        return self.trace_within / self.trace_total

    @property
    def between_total_official(self) -> Number:
        """``tr(Sigma_B) / tr(Sigma_T)`` as ``nc_nn_ratio.py`` computes it:
        ``C trace_between / trace_total`` (class docstring)."""
        return self.num_classes * self.trace_between / self.trace_total

    def to_dict(self) -> dict:
        """Plain ``dict`` of Python numbers (``None`` where not computed), ready for JSON:
        the fields, then ``OFFICIAL_METRICS`` (the official scripts' convention)."""
        values = self._asdict() | {k: getattr(self, k) for k in OFFICIAL_METRICS}
        return {k: (None if v is None else (int(v) if isinstance(v, int) else float(v)))
                for k, v in values.items()}

    @classmethod
    def from_dict(cls, data: dict) -> CollapseMetrics:
        """The metrics from their ``to_dict`` form (the official values, properties, are
        recomputed from the fields)."""
        return cls(**{f: data[f] for f in cls._fields})


# the properties of CollapseMetrics in the official scripts' convention, recorded by to_dict
OFFICIAL_METRICS = ("nc1_official", "within_total_official", "between_total_official")


@functools.partial(jax.jit, static_argnames=("num_classes",))
def class_sums(H: jax.Array, y: jax.Array, ref: jax.Array, num_classes: int):
    """First pass, one chunk: per-class sums of ``h_i - ref`` and whether all rows are finite.

    Args:
      H: ``(b, d)`` features; y: ``(b,)`` int labels in ``0..C-1``; ref: ``(1, d)`` shift.

    Returns:
      ``(sums (C, d), all_finite ())``.
    """
    onehot = jax.nn.one_hot(y, num_classes, dtype=H.dtype)
    return matmul(onehot.T, H - ref), jnp.isfinite(H).all()


@jax.jit
def residual_sums(H, y, predictions, ref, means, pinv_proj):
    """Second pass, one chunk, over ``r_i = (h_i - ref) - m_{y_i}`` (``m``: shifted class means).

    Args:
      H: ``(b, d)``; y, predictions: ``(b,)``; ref: ``(1, d)``; means: ``(C, d)``;
      pinv_proj: ``B = V_r S_r^-1`` padded to ``(d, C)``.

    Returns:
      ``(per-class sum ||r||^2 (C,), sum ||r^T B||^2, NCC hits, NCC mismatches)``, the
      nearest-class-centre rule taking ``argmin_c ||h - mu_c||``.
    """
    C = means.shape[0]
    valid = y >= 0  # rows labelled -1 are padding (sharded inputs)
    shifted = H - ref
    R = jnp.where(valid[:, None], shifted - means[jnp.where(valid, y, 0)], 0.0)
    onehot = jax.nn.one_hot(y, C, dtype=H.dtype)
    within = matmul(onehot.T, jnp.sum(R * R, axis=1)[:, None])[:, 0]
    Q = matmul(R, pinv_proj)
    mean_sq = jnp.sum(means * means, axis=1)
    ncc = jnp.argmin(mean_sq[None, :] - 2.0 * matmul(shifted, means.T), axis=1).astype(y.dtype)
    return (
        within,
        jnp.sum(Q * Q),
        jnp.sum(ncc == y).astype(jnp.int32),
        jnp.sum((ncc != predictions) & valid).astype(jnp.int32),
    )


@functools.partial(jax.jit, static_argnames=("num_classes",))
def label_counts(y: jax.Array, num_classes: int) -> tuple[jax.Array, jax.Array]:
    """Per-class counts of labels ``y`` (``-1`` = padding, not counted) and whether every
    other label lies in ``0..C-1``."""
    padding = y == -1
    in_range = jnp.all(padding | ((y >= 0) & (y < num_classes)))
    return jnp.sum(jax.nn.one_hot(y, num_classes, dtype=jnp.int32), axis=0), in_range


def _as_labels(name: str, labels: ArrayLike, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of integer class labels; got shape {y.shape}.")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} entries but features has {n} rows.")
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)):
            raise ValueError(f"{name} must hold integer class labels; got dtype {y.dtype}.")
        y = y.astype(np.int64)
    return y.astype(np.int32)


def _label_rows(name: str, labels, H: Rows) -> Rows:
    """Labels as ``Rows`` beside the features ``H``, padding rows labelled ``-1``."""
    if isinstance(labels, Rows):
        if labels.n != H.n:
            raise ValueError(f"{name} has {labels.n} entries but features has {H.n} rows.")
        return labels
    return as_rows(_as_labels(name, labels, H.n), H.mesh, fill=-1)


class _Blocks(NamedTuple):
    """Checked features and labels: ``blocks()`` yields ``(H, y, predictions)`` on the
    device, the whole of sharded ``Rows`` at once (each jitted pass reduces across devices)
    or an array in chunks of rows (a numpy array is never copied whole); ``ref`` is the
    first row, the shift of every row."""

    blocks: Callable[[], Iterator[tuple[jax.Array, jax.Array, jax.Array]]]
    n: int
    d: int
    dtype: np.dtype
    num_classes: int
    counts: np.ndarray
    ref: jax.Array


def _checked_blocks(features, labels, predictions, num_classes: int | None,
                    chunk: int) -> _Blocks:
    """The boundary of ``collapse_metrics``: every check on the inputs, once, and the one
    form (``_Blocks``) both kinds of input take for the two passes."""
    if isinstance(features, Rows):
        H = features
        (n, d), dtype = H.shape, H.dtype
        y_dev = _label_rows("labels", labels, H)
        preds_dev = y_dev if predictions is None else _label_rows("predictions", predictions, H)
        C = int(num_classes) if num_classes is not None else int(jnp.max(y_dev.data)) + 1
        counts_dev, in_range = label_counts(y_dev.data, C)
        if not bool(in_range):
            raise ValueError(f"labels must lie in 0..{C - 1}.")
        counts = np.asarray(counts_dev, dtype=np.float64)

        def blocks():
            yield H.data, y_dev.data, preds_dev.data

        return _Blocks(blocks, n, d, dtype, C, counts, H.data[:1])
    H = features if isinstance(features, jax.Array) else np.asarray(features)
    if H.ndim != 2 or 0 in H.shape:
        raise ValueError(
            f"features must be a non-empty 2-D array (samples x features); got {H.shape}.")
    dtype = H.dtype if jnp.issubdtype(H.dtype, jnp.floating) else np.float32
    dtype = jax.dtypes.canonicalize_dtype(dtype)
    n, d = H.shape
    if isinstance(labels, Rows):
        raise ValueError("labels are Rows but features are not: pass both as Rows on one "
                         "mesh, or both as arrays.")
    y = _as_labels("labels", labels, n)
    if y.min() < 0 or (num_classes is not None and y.max() >= num_classes):
        bad = y[(y < 0) | (y >= (num_classes or np.iinfo(np.int32).max))]
        raise ValueError(
            f"labels must lie in 0..{(num_classes or y.max() + 1) - 1}; found {bad[:5].tolist()}."
        )
    C = int(y.max()) + 1 if num_classes is None else int(num_classes)
    counts = np.bincount(y, minlength=C).astype(np.float64)
    preds = y if predictions is None else _as_labels("predictions", predictions, n)

    def chunks():
        for start in range(0, n, chunk):
            block = H[start:start + chunk]
            block = block.astype(dtype) if isinstance(block, jax.Array) else jax.device_put(
                np.asarray(block, dtype=dtype))
            yield block, jnp.asarray(y[start:start + chunk]), jnp.asarray(preds[start:start + chunk])

    return _Blocks(chunks, n, d, dtype, C, counts, jnp.asarray(np.asarray(H[:1]), dtype=dtype))


def _summed(fn, source: _Blocks, *args):
    """``sum_k fn(block_k, *args)`` over the blocks of ``source`` (a pytree sum)."""
    total = None
    for block in source.blocks():
        out = fn(*block, *args)
        total = out if total is None else jax.tree.map(jnp.add, total, out)
    return total


def collapse_metrics(
    features: ArrayLike | Rows,
    labels: ArrayLike | Rows,
    *,
    num_classes: int | None = None,
    classifier: ArrayLike | None = None,
    predictions: ArrayLike | None = None,
    chunk_size: int | None = None,
    rtol: float | None = None,
) -> CollapseMetrics:
    """All collapse metrics of ``features`` grouped by ``labels`` (see the module docstring).

    Args:
      features: ``(n, d)`` numpy or JAX array, or ``Rows`` sharded over a mesh: then the
        class sums and residual sums are reduced across devices (one jitted pass each,
        partitioned by the features' sharding) and nothing gathers the rows.
      labels: ``(n,)`` integer labels in ``0..C-1``; every class must occur (for ``Rows``
        features also ``Rows``, padding labelled ``-1``).
      num_classes: ``C`` (default ``max(labels) + 1``).
      classifier: optional ``(C, d)`` last-layer weights for ``nc3``.
      predictions: optional ``(n,)`` predicted labels for ``ncc_mismatch``.
      chunk_size: rows per streaming step (default 4096); memory beyond the features is
        ``O(chunk_size * d + C * d)``. Use a fixed value across calls: each new chunk
        shape compiles once.
      rtol: rank cut for ``nc1_pinv``: singular values of the centred means below
        ``rtol * s_max`` are dropped (default ``max(C, d) * eps`` of the features' dtype).

    Returns:
      ``CollapseMetrics``. Under ``jax.jit``, ``vmap`` or ``grad`` (traced features or
      labels; ``num_classes`` then required) the metrics come from
      ``traced_collapse_metrics`` as arrays: the same formulas in JAX, in the features'
      dtype, without the checks that need values.

    Raises:
      ValueError: on mismatched lengths, labels outside ``0..C-1``, an empty class, fewer
        than 2 classes, non-finite features, or class means that all coincide.
    """
    if _checks.is_traced(features, labels, classifier, predictions):
        if num_classes is None:
            raise ValueError("Under jax.jit, vmap or grad, collapse_metrics needs num_classes "
                             "(the number of classes fixes the shapes).")
        if isinstance(features, Rows) or isinstance(labels, Rows):
            raise ValueError("Under jax.jit, vmap or grad, collapse_metrics takes arrays of "
                             "features and labels, not Rows (rows on a mesh are measured "
                             "eagerly).")
        return traced_collapse_metrics(features, labels, int(num_classes), classifier,
                                       predictions, rtol)
    chunk = int(chunk_size or DEFAULT_CHUNK)
    if chunk < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size}.")
    source = _checked_blocks(features, labels, predictions, num_classes, chunk)
    C, d = source.num_classes, source.d
    W = None
    if classifier is not None:  # before the passes: a wrong shape costs no work
        W = np.asarray(classifier, dtype=np.float64)
        if W.shape != (C, d):
            raise ValueError(f"classifier must have shape (C, d) = {(C, d)}; got {W.shape}.")
    return _metrics(_class_statistics(source, rtol), W, predictions is not None)


class _ClassStatistics(NamedTuple):
    """What every collapse metric is computed from (float64 NumPy eagerly, JAX arrays in
    the features' dtype when traced): per-class ``counts`` (``C``), class ``means`` shifted
    by ``ref`` (``(C, d)``; ``ref`` the first feature row), per-class sums of squared
    residuals ``within`` (``sum_{i in c} ||h_i - mu_c||^2``), ``pinv_sq`` (``sum_i ||S_r^-1
    V_r^T (h_i - mu_{y_i})||^2``) with the rank ``pinv_rank`` kept, the nearest-class-centre
    hits and mismatches with the predictions, and ``n``."""

    counts: np.ndarray | jax.Array
    means: np.ndarray | jax.Array
    ref: np.ndarray | jax.Array
    within: np.ndarray | jax.Array
    pinv_sq: Number
    pinv_rank: Count
    ncc_hits: Number  # NaN where no second pass ran (class_statistics.metrics)
    ncc_miss: Number
    n: int


def _class_statistics(source: _Blocks, rtol: float | None) -> _ClassStatistics:
    """The two streaming passes over ``source``: class sums, then residual sums against the
    class means and their pseudo-inverse projection. Raises ``ValueError`` for fewer than 2
    classes, an empty class, non-finite features, or coinciding class means."""
    n, dtype, C, counts = source.n, source.dtype, source.num_classes, source.counts
    check_class_counts(counts)
    # first pass: per-class sums of h_i - h_0 (labels only: predictions are not used)
    sums, finite = _summed(lambda H, y, _, *args: class_sums(H, y, *args), source, source.ref, C)
    if not bool(finite):
        raise ValueError("features contain NaN or infinite values; clean them before measuring.")
    means = np.asarray(sums, dtype=np.float64) / counts[:, None]  # shifted class means
    centred = means - means.mean(axis=0)  # Mt: shift-invariant
    check_class_means(centred)
    proj, rank = pinv_projection(centred, dtype, rtol)
    within, pinv_sq, ncc_hits, ncc_miss = _summed(residual_sums, source, source.ref,
                                                  jnp.asarray(means, dtype),
                                                  jnp.asarray(proj, dtype))
    return _ClassStatistics(counts, means, np.asarray(source.ref[0], dtype=np.float64),
                           np.asarray(within, dtype=np.float64), float(pinv_sq),
                           rank, int(ncc_hits), int(ncc_miss), n)


def check_class_counts(counts: np.ndarray) -> None:
    """``ValueError`` for fewer than 2 classes or a class with no rows (``counts``: ``(C,)``)."""
    if len(counts) < 2:
        raise ValueError(f"Collapse metrics need at least 2 classes; got {len(counts)}.")
    if (counts == 0).any():
        raise ValueError(
            f"Classes {np.flatnonzero(counts == 0)[:10].tolist()} have no rows (no samples); "
            "pass num_classes matching the labels present, or relabel them to 0..C-1 without "
            "gaps.")


def check_class_means(centred: np.ndarray) -> None:
    """``ValueError`` when the centred class means (``(C, d)``) are all 0: NC1 and NC2 are
    then undefined."""
    if not np.trace(centred @ centred.T) > 0:
        raise ValueError(
            "All class means coincide (between-class scatter is 0): NC1 and NC2 are undefined.")


def pinv_projection(centred: np.ndarray, dtype, rtol: float | None) -> tuple[np.ndarray, int]:
    """``B = V_r S_r^-1`` padded to ``(d, C)`` and the rank ``r`` kept, from the thin SVD of
    the centred class means ``Mt = U S V^T`` (``(C, d)``, float64; no ``d x d``): with
    ``Sigma_B = V S^2 V^T / C``, ``tr(Sigma_W Sigma_B^+) / C = (1/n) sum_i ||r_i^T B||^2``, a
    sum of squares. Singular values below ``rtol * s_max`` are cut (default ``max(C, d)``
    times ``dtype``'s epsilon)."""
    C, d = centred.shape
    _, sing, Vt = np.linalg.svd(centred, full_matrices=False)
    if rtol is None:
        rtol = max(C, d) * float(jnp.finfo(dtype).eps)
    keep = sing > rtol * sing[0]
    proj = np.zeros((d, C))
    proj[:, : keep.sum()] = Vt[keep].T / sing[keep]
    return proj, int(keep.sum())


def metric_formulas(xp, stats: _ClassStatistics, W, with_predictions: bool) -> CollapseMetrics:
    """Every metric (module docstring) from the class statistics: the one copy of the
    formulas, written once for ``xp = numpy`` (the eager ``C x C`` algebra, float64) and
    ``xp = jax.numpy`` (traced, in the statistics' dtype). ``W``: the classifier for
    ``nc3`` (``None``: no ``nc3``); ``with_predictions``: report ``ncc_mismatch``. Fields are
    ``xp`` scalars; masks replace boolean indexing so the traced shapes stay static."""
    counts, means, within, n = stats.counts, stats.means, stats.within, stats.n
    dot: Callable = np.matmul if xp is np else matmul
    dtype = means.dtype
    C = counts.shape[0]
    eye, ones = xp.eye(C, dtype=dtype), xp.ones((C, C), dtype=dtype)
    centred = means - xp.mean(means, axis=0, keepdims=True)
    gram = dot(centred, centred.T)
    trace_between = xp.trace(gram) / C
    trace_within = xp.sum(within) / n
    norms = xp.sqrt(xp.clip(xp.diagonal(gram), 0.0, None))
    cos = gram / (norms[:, None] * norms[None, :])
    etf = (1.0 + 1.0 / (C - 1)) * eye - ones / (C - 1)
    off = eye == 0
    n_off = C * (C - 1)
    mean_off = xp.sum(xp.where(off, cos, 0.0)) / n_off
    simplex = (eye - ones / C) / math.sqrt(C - 1.0)
    uncentred = means + stats.ref
    gram_u = dot(uncentred, uncentred.T)
    pair_sq = xp.clip(xp.diagonal(gram)[:, None] + xp.diagonal(gram)[None, :] - 2.0 * gram,
                      0.0, None)
    var = within / counts
    upper = xp.triu(xp.ones((C, C), dtype=bool), k=1)
    pairs = (var[:, None] + var[None, :]) / (2.0 * xp.where(upper, pair_sq, 1.0))
    nc3 = None
    if W is not None:
        nc3 = xp.sum((W / xp.linalg.norm(W) - centred / xp.linalg.norm(centred)) ** 2)
    return CollapseMetrics(
        nc1=trace_within / trace_between,
        nc1_pinv=stats.pinv_sq / n,
        nc1_pinv_rank=stats.pinv_rank,
        nc2=xp.mean((cos - etf) ** 2),
        nc2_etf=xp.linalg.norm(gram / xp.linalg.norm(gram) - simplex),
        nc2_orthogonal=xp.linalg.norm(gram_u / xp.linalg.norm(gram_u) - eye / math.sqrt(C)),
        equinorm=xp.std(norms) / xp.mean(norms),
        equiangularity=xp.sqrt(xp.sum(xp.where(off, (cos - mean_off) ** 2, 0.0)) / n_off),
        max_angle=xp.sum(xp.where(off, xp.abs(cos + 1.0 / (C - 1)), 0.0)) / n_off,
        nc3=nc3,
        ncc_accuracy=stats.ncc_hits / n,
        ncc_mismatch=stats.ncc_miss / n if with_predictions else None,
        cdnv=xp.sum(xp.where(upper, pairs, 0.0)) / (n_off / 2),
        trace_within=trace_within,
        trace_between=trace_between,
        trace_total=trace_within + xp.sum(counts * xp.diagonal(gram)) / n,
        num_classes=C,
        num_samples=n,
    )


def _metrics(stats: _ClassStatistics, W: np.ndarray | None,
             with_predictions: bool) -> CollapseMetrics:
    """``metric_formulas`` in float64 NumPy, as Python numbers; warns where two classes
    share a mean (CDNV infinite)."""
    with np.errstate(divide="ignore"):  # a shared mean: an infinite CDNV pair, warned below
        metrics = metric_formulas(np, stats, W, with_predictions)
    if not np.isfinite(metrics.cdnv):  # at the line that called collapse_metrics
        warnings.warn("Two classes share a mean: CDNV is infinite.", RuntimeWarning, stacklevel=3)
    counts = ("nc1_pinv_rank", "num_classes", "num_samples")
    return CollapseMetrics._make(v if f in counts or v is None else float(v)
                                 for f, v in metrics._asdict().items())


def traced_collapse_metrics(
    H: ArrayLike,
    y: ArrayLike,
    num_classes: int,
    classifier: ArrayLike | None = None,
    predictions: ArrayLike | None = None,
    rtol: float | None = None,
) -> CollapseMetrics:
    """``collapse_metrics`` as one traceable function of arrays (``jit``, ``vmap``, ``grad``).

    The same definitions (module docstring) from the whole ``(n, d)`` features at once, with
    the ``C x C`` algebra in the features' dtype (float64 with x64 on; the eager path
    always uses float64); the rank of ``Sigma_B`` is cut by a mask, so shapes are static.
    Fields are arrays (``nc3`` / ``ncc_mismatch`` ``None`` when their inputs are).

    The values eager calls refuse cannot raise here: a label outside ``0..C-1``, a class
    with no sample, or a NaN or infinite feature make **every** float field NaN (and
    ``nc1_pinv_rank`` -1), never a number computed from part of the data; run the call
    through ``dnc_jax.checked`` to have them reported as errors instead.
    """
    H = jnp.asarray(H)
    if not jnp.issubdtype(H.dtype, jnp.floating):
        H = H.astype(jnp.float32)
    if H.ndim != 2:
        raise ValueError(f"features must be a 2-D array (samples x features); got shape {H.shape}.")
    n, d = H.shape
    C = int(num_classes)
    if C < 2:
        raise ValueError(f"Collapse metrics need at least 2 classes; got num_classes={C}.")
    y = jnp.asarray(y)
    if y.shape != (n,) or not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"labels must be ({n},) integers; got shape {y.shape}, dtype {y.dtype}.")
    y = y.astype(jnp.int32)
    in_range = jnp.all((y >= 0) & (y < C))
    present = jnp.all(jnp.zeros(C, jnp.int32).at[y].add(1, mode="drop") > 0)
    finite = jnp.all(jnp.isfinite(H))
    _checks.traced_check(in_range, f"labels must lie in 0..{C - 1}.")
    _checks.traced_check(present, f"every class of 0..{C - 1} must occur in labels.")
    _checks.traced_check(finite, "features contain NaN or infinite values.")
    metrics = _traced_metrics(H, y, C, classifier, predictions, rtol)
    valid = in_range & present & finite
    undefined = {f: _checks.nan_unless(valid, v) for f, v in metrics._asdict().items()
                 if f not in ("num_classes", "num_samples", "nc1_pinv_rank") and v is not None}
    return metrics._replace(nc1_pinv_rank=jnp.where(valid, metrics.nc1_pinv_rank, -1), **undefined)


def _traced_metrics(H, y, C, classifier, predictions, rtol) -> CollapseMetrics:
    """The class statistics of ``traced_collapse_metrics``'s checked inputs, in one pass
    over the whole features, and ``metric_formulas`` on them."""
    n, d = H.shape
    dtype = H.dtype
    shifted = H - H[:1]
    onehot = jax.nn.one_hot(y, C, dtype=dtype)
    counts = jnp.sum(onehot, axis=0)
    means = matmul(onehot.T, shifted) / counts[:, None]
    centred = means - jnp.mean(means, axis=0, keepdims=True)
    R = shifted - means[y]
    within = matmul(onehot.T, jnp.sum(R * R, axis=1)[:, None])[:, 0]
    _, sing, Vt = jnp.linalg.svd(centred, full_matrices=False)
    cut = (max(C, d) * float(jnp.finfo(dtype).eps)) if rtol is None else rtol
    keep = sing > cut * sing[0]
    inverse = jnp.where(keep, 1.0 / jnp.where(keep, sing, 1.0), 0.0)
    Q = matmul(R, Vt.T * inverse[None, :])
    mean_sq = jnp.sum(means * means, axis=1)
    ncc = jnp.argmin(mean_sq[None, :] - 2.0 * matmul(shifted, means.T), axis=1).astype(jnp.int32)
    miss = jnp.zeros((), dtype)
    if predictions is not None:
        miss = jnp.sum(ncc != jnp.asarray(predictions).astype(jnp.int32)).astype(dtype)
    stats = _ClassStatistics(counts, means, H[:1], within, jnp.sum(Q * Q), jnp.sum(keep),
                             jnp.sum(ncc == y).astype(dtype), miss, n)
    W = None if classifier is None else jnp.asarray(classifier, dtype)
    return metric_formulas(jnp, stats, W, predictions is not None)
