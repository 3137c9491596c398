"""Collapse metrics against a plain float64 reference, their invariances, bad input, sharded and traced."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_row_sharded
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerances import F64, ROUNDING

from dnc_jax import (
    CollapseMetrics,
    collapse_metrics,
    data_mesh,
)
from dnc_jax.sharding import as_rows

# ---------------------------------------------------------------- collapse metrics traced


def _blobs(rng, n=90, d=12, C=4):
    y = rng.permutation(np.arange(n) % C)
    return rng.standard_normal((C, d))[y] * 3 + rng.standard_normal((n, d)), y


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-6), (np.float64, 1e-12)])
def test_collapse_metrics_under_jit_equal_eager(rng, dtype, tol):
    """The traced path (jit) against the eager one, whose C x C algebra is float64. In
    float32 a ratio of sums rounds at a few eps (6e-8) times its condition: the worst
    here is equinorm, std / mean of the C = 4 class-mean norms, whose relative error is
    about eps * mean / std, ~5e-7 for features like these (measured worst over 20 draws:
    7.5e-7, equinorm; the other metrics 3e-7 or less). Features whose class means have
    nearly equal norms (equinorm near 0) need a bound in proportion."""
    from dnc_jax import collapse_metrics

    with jax.enable_x64(dtype == np.float64):
        H, y = _blobs(rng)
        H = jnp.asarray(H, dtype)
        W = jnp.asarray(rng.standard_normal((4, 12)), dtype)
        preds = jnp.asarray(rng.integers(0, 4, len(y)))
        eager = collapse_metrics(H, y, classifier=W, predictions=preds, rtol=1e-6)
        jitted = jax.jit(lambda H, y, W, p: collapse_metrics(
            H, y, num_classes=4, classifier=W, predictions=p, rtol=1e-6))(H, jnp.asarray(y), W,
                                                                           preds)
        for name, value in eager._asdict().items():
            np.testing.assert_allclose(float(getattr(jitted, name)), float(value), rtol=tol,
                                       atol=tol * 1e-3, err_msg=name)


def test_traced_metrics_equal_eager_for_small_overlapping_classes(rng, x64):
    """Class means of norm far below 1 (features scaled by 1e-3) and classes that overlap
    (so that nearest-class-centre assignments depend on every term of the distance): the
    traced path equals the eager one in float64, every metric, with a rank cut relative to
    the largest singular value (``rtol = 1e-4`` drops the one of 5e-6 but keeps 1e-2).
    With the default cut all three are kept. Both paths in float64: a rounding ``delta``
    of ~1e-16 in the class means moves the smallest kept singular value ``s`` by about
    ``delta`` and ``nc1_pinv``'s term in ``1 / s^2`` by ``2 delta / s`` relative: 4e-11
    for ``s = 5e-6``, inside ``rtol = 1e-9``."""
    C, d, n = 4, 8, 80
    U = np.linalg.qr(np.c_[np.ones(C), rng.standard_normal((C, C - 1))])[0][:, 1:]  # _|_ 1
    V = np.linalg.qr(rng.standard_normal((d, C - 1)))[0]
    y = np.arange(n) % C
    noise = rng.standard_normal((n, d))
    noise -= np.stack([noise[y == c].mean(axis=0) for c in range(C)])[y]  # exact class means
    H = 1e-3 * ((U @ np.diag([1.0, 1e-2, 5e-6]) @ V.T)[y] + 0.5 * noise)
    W = rng.standard_normal((C, d))
    preds = rng.integers(0, C, n)
    for rtol, rank in ((1e-4, 2), (None, 3)):  # None: max(C, d) eps keeps 5e-6
        eager = collapse_metrics(H, y, classifier=W, predictions=preds, rtol=rtol)
        assert eager.nc1_pinv_rank == rank and 0.05 < eager.ncc_accuracy < 0.95
        jitted = jax.jit(lambda H, y, W, p, rtol=rtol: collapse_metrics(
            H, y, num_classes=C, classifier=W, predictions=p, rtol=rtol))(
                jnp.asarray(H), jnp.asarray(y), jnp.asarray(W), jnp.asarray(preds))
        for name, value in eager._asdict().items():
            np.testing.assert_allclose(float(getattr(jitted, name)), float(value), rtol=1e-9,
                                       err_msg=name)


def test_traced_metrics_at_the_edges_of_their_checks(rng, x64):
    """Under ``jit``: two classes are enough and one sample makes a class present (the
    metrics equal the eager ones); a label equal to ``C``, with every class present
    besides, is out of range (NaN, rank -1), not dropped from the sums."""
    H = rng.standard_normal((7, 3))
    measure = jax.jit(lambda H, y: collapse_metrics(H, y, num_classes=2))
    y = np.array([0, 0, 0, 0, 0, 0, 1])  # class 1: one sample
    traced, eager = measure(jnp.asarray(H), jnp.asarray(y)), collapse_metrics(H, y)
    for name in ("nc1", "nc1_pinv", "cdnv", "ncc_accuracy"):
        np.testing.assert_allclose(float(getattr(traced, name)), getattr(eager, name),
                                   rtol=ROUNDING[F64], err_msg=name)
    assert int(traced.nc1_pinv_rank) == eager.nc1_pinv_rank == 1
    beyond = measure(jnp.asarray(H), jnp.asarray(np.array([0, 1, 2, 0, 1, 0, 1])))
    assert np.isnan(float(beyond.nc1)) and int(beyond.nc1_pinv_rank) == -1


def test_traced_metrics_refuse_rows(rng):
    """Rows on a mesh are measured eagerly: under ``jit`` with traced labels, features
    given as ``Rows`` get the message, not a failure inside the traced maths."""
    H, y = _blobs(rng)
    rows = as_rows(jnp.asarray(H, jnp.float32), data_mesh())
    with pytest.raises(ValueError, match="not Rows"):
        jax.jit(lambda y: collapse_metrics(rows, y, num_classes=4))(jnp.asarray(y))


@pytest.mark.slow
def test_collapse_metrics_vmap_over_five_seeds_equals_a_loop(rng):
    from dnc_jax import collapse_metrics

    sets = [_blobs(np.random.default_rng(seed)) for seed in range(5)]
    H = jnp.asarray(np.stack([h for h, _ in sets]), jnp.float32)
    y = jnp.asarray(np.stack([labels for _, labels in sets]))
    batched = jax.vmap(lambda H, y: collapse_metrics(H, y, num_classes=4))(H, y)
    for i in range(5):
        single = collapse_metrics(H[i], np.asarray(y[i]))
        for name in ("nc1", "nc1_pinv", "nc2", "cdnv", "equinorm", "trace_total"):
            np.testing.assert_allclose(batched._asdict()[name][i], getattr(single, name),
                                       rtol=1e-5, err_msg=name)
    with pytest.raises(ValueError, match="needs num_classes"):
        jax.jit(lambda H, y: collapse_metrics(H, y))(H[0], y[0])


def test_sharded_collapse_metrics_equal_one_device(digits_rows):
    X, y, _ = digits_rows
    mesh = data_mesh("all")
    rows = as_rows(X + 3.0, mesh)
    assert_row_sharded(rows.data, mesh)
    assert rows.data.shape[0] == 404 and rows.n == 402
    a = collapse_metrics(rows, y, predictions=(y + 1) % 10)
    b = collapse_metrics(X + 3.0, y, predictions=(y + 1) % 10)
    for field in ("nc1", "nc1_pinv", "nc2", "nc2_etf", "cdnv", "trace_within", "trace_total"):
        assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-5), field
    assert a.ncc_accuracy == b.ncc_accuracy and a.ncc_mismatch == b.ncc_mismatch
    assert a.num_samples == 402


def reference(H, y, C, W=None, preds=None, rcond=None):
    """Plain float64 numpy, building the d x d scatter matrices (the textbook formulas)."""
    H = np.asarray(H, dtype=np.float64)
    n, d = H.shape
    mu = np.stack([H[y == c].mean(axis=0) for c in range(C)])
    mu_g = mu.mean(axis=0)
    Mt = mu - mu_g
    R = H - mu[y]
    Sw = R.T @ R / n
    Sb = Mt.T @ Mt / C
    # pinv cut on eigenvalues of Sb = s^2 / C, i.e. at rcond^2 relative on singular values s
    Sb_pinv = np.linalg.pinv(Sb, rcond=rcond**2, hermitian=True)
    G = Mt @ Mt.T
    norms = np.linalg.norm(Mt, axis=1)
    cos = G / np.outer(norms, norms)
    E = (1 + 1 / (C - 1)) * np.eye(C) - np.ones((C, C)) / (C - 1)
    off = ~np.eye(C, dtype=bool)
    Gu = mu @ mu.T
    var = np.array([np.mean(np.sum((H[y == c] - mu[c]) ** 2, axis=1)) for c in range(C)])
    pairs = [(var[a] + var[b]) / (2 * np.sum((mu[a] - mu[b]) ** 2))
             for a in range(C) for b in range(a + 1, C)]
    ncc = np.argmin(((H[:, None, :] - mu[None]) ** 2).sum(-1), axis=1)
    out = dict(
        nc1=np.trace(Sw) / np.trace(Sb),
        nc1_pinv=np.trace(Sw @ Sb_pinv) / C,
        nc2=np.mean((cos - E) ** 2),
        nc2_etf=np.linalg.norm(G / np.linalg.norm(G) - (np.eye(C) - 1 / C) / np.sqrt(C - 1)),
        nc2_orthogonal=np.linalg.norm(Gu / np.linalg.norm(Gu) - np.eye(C) / np.sqrt(C)),
        equinorm=norms.std() / norms.mean(),
        equiangularity=cos[off].std(),
        max_angle=np.mean(np.abs(cos[off] + 1 / (C - 1))),
        cdnv=np.mean(pairs),
        trace_within=np.trace(Sw),
        trace_between=np.trace(Sb),
        trace_total=np.mean(np.sum((H - mu_g) ** 2, axis=1)),
        ncc_accuracy=np.mean(ncc == y),
    )
    if W is not None:
        out["nc3"] = np.sum((W / np.linalg.norm(W) - Mt / np.linalg.norm(Mt)) ** 2)
    if preds is not None:
        out["ncc_mismatch"] = np.mean(ncc != preds)
    return out


def _features(rng, n, d, C, spread=1.0, mean_rank=None):
    y = rng.permutation(np.arange(n) % C)
    means = rng.standard_normal((C, d)) * 3
    if mean_rank is not None:  # class means confined to a low-dimensional subspace
        means = rng.standard_normal((C, mean_rank)) @ rng.standard_normal((mean_rank, d))
    noise = spread * rng.standard_normal((n, d))
    if mean_rank is not None:  # empirical class means exactly equal to the low-rank means
        noise -= np.stack([noise[y == c].mean(axis=0) for c in range(C)])[y]
    return means[y] + noise, y


@pytest.mark.slow
@pytest.mark.parametrize(
    "n,d,C,mean_rank,spread",
    [(300, 20, 5, None, 1.0), (60, 200, 6, None, 1.0), (200, 30, 8, 3, 1.0),
     (40, 100, 4, 2, 1.0),
     (120, 10, 4, None, 4.0),  # classes overlap: the nearest-centre rule errs
     (90, 1, 3, None, 1.0),  # one feature
     (80, 5, 2, None, 1e-2)],  # two classes, means closer than 1
)
def test_matches_float64_reference(rng, x64, n, d, C, mean_rank, spread):
    H, y = _features(rng, n, d, C, spread=spread, mean_rank=mean_rank)
    if C == 2:
        H = H * spread
    W = rng.standard_normal((C, d))
    preds = rng.integers(0, C, n)
    rtol = 1e-6
    got = collapse_metrics(H, y, classifier=W, predictions=preds, chunk_size=37, rtol=rtol)
    ref = reference(H, y, C, W, preds, rcond=rtol)
    for name, value in ref.items():
        np.testing.assert_allclose(getattr(got, name), value, rtol=1e-6, atol=1e-12, err_msg=name)
    expected_rank = min(C - 1, mean_rank or C, d)
    assert got.nc1_pinv_rank == expected_rank
    if spread > 1:
        assert 0.3 < got.ncc_accuracy < 0.95  # the rule's choice is visible


def test_float32_large_offset_nc1_pinv(rng):
    H, y = _features(rng, 2000, 64, 10, spread=0.5)
    H32 = (H + 1e4).astype(np.float32)
    with jax.enable_x64(True):  # float64 math on the same values
        exact = collapse_metrics(H32.astype(np.float64), y)
    ref = reference(H32, y, 10, rcond=1e-6)
    got = collapse_metrics(H32, y)
    assert got.nc1_pinv > 0
    # the shifted float32 passes reach ~2e-8 (measured); without the shift, ~1e-5
    assert abs(got.nc1_pinv - ref["nc1_pinv"]) <= 1e-6 * ref["nc1_pinv"]
    assert abs(got.nc1 - ref["nc1"]) <= 1e-6 * ref["nc1"]
    assert abs(exact.nc1_pinv - ref["nc1_pinv"]) <= 1e-12 * ref["nc1_pinv"]
    assert abs(exact.nc1 - ref["nc1"]) <= 1e-12 * ref["nc1"]


METRICS = ("nc1", "nc1_pinv", "nc2", "nc2_etf", "equinorm", "equiangularity", "max_angle", "cdnv")


@st.composite
def _problem(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    C = draw(st.integers(2, 6))
    d = draw(st.integers(C, 12))
    n = draw(st.integers(2 * C, 40))
    return np.random.default_rng(seed), n, d, C


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_problem())
def test_invariances(x64, problem):
    rng, n, d, C = problem
    H, y = _features(rng, n, d, C)
    W = rng.standard_normal((C, d))
    base = collapse_metrics(H, y, classifier=W, rtol=1e-9)
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    perm = rng.permutation(C)
    shift = rng.standard_normal(d) * 10
    rotated = collapse_metrics(H @ Q, y, classifier=W @ Q, rtol=1e-9)
    scaled = collapse_metrics(3.7 * H, y, classifier=W, rtol=1e-9)
    moved = collapse_metrics(H + shift, y, classifier=W, rtol=1e-9)
    inverse = np.argsort(perm)
    relabelled = collapse_metrics(H, perm[y], classifier=W[inverse], rtol=1e-9)
    for name in METRICS + ("nc3",):
        for other in (rotated, scaled, moved, relabelled):
            np.testing.assert_allclose(getattr(other, name), getattr(base, name), rtol=1e-6,
                                       atol=1e-10, err_msg=name)
    # uncentred by design: rotation, scale and relabelling only
    for other in (rotated, scaled, relabelled):
        np.testing.assert_allclose(other.nc2_orthogonal, base.nc2_orthogonal, rtol=1e-6)


def test_ideal_geometries(x64):
    C, d, per = 5, 8, 4
    # simplex ETF class means, every sample exactly at its class mean
    etf = np.eye(C) - 1.0 / C
    means = np.zeros((C, d))
    means[:, :C] = etf
    y = np.repeat(np.arange(C), per)
    H = means[y]
    m = collapse_metrics(H, y)
    assert m.nc1 <= 1e-20 and m.nc1_pinv <= 1e-20
    for name in ("nc2", "nc2_etf", "max_angle", "equinorm", "equiangularity"):
        assert abs(getattr(m, name)) <= 1e-12, name
    # orthogonal frame (post-ReLU geometry)
    frame = np.zeros((C, d))
    frame[:, :C] = 2.0 * np.eye(C)
    assert collapse_metrics(frame[y], y).nc2_orthogonal <= 1e-12
    # a single-sample class has zero spread and is fine
    H1 = np.concatenate([H, means[:1] + 0.1])
    y1 = np.concatenate([y, [0]])
    assert collapse_metrics(H1[[0, 4, 8, 12, 16]], y1[[0, 4, 8, 12, 16]]).nc1 == 0.0


def test_bad_input(rng):
    H, y = _features(rng, 50, 6, 3)
    with pytest.raises(ValueError, match="50 rows"):
        collapse_metrics(H, y[:-1])
    with pytest.raises(ValueError, match=r"lie in 0\.\.1; found \[2, 2, 2, 2, 2\]"):
        collapse_metrics(H, y, num_classes=2)
    one_negative = y.copy()
    one_negative[np.flatnonzero(y == 1)[0]] = -1
    with pytest.raises(ValueError, match=r"lie in 0\.\.2; found \[-1\]\."):
        collapse_metrics(H, one_negative)
    with pytest.raises(ValueError, match="integer class labels"):
        collapse_metrics(H, y + 0.5)
    with pytest.raises(ValueError, match="chunk_size"):
        collapse_metrics(H, y, chunk_size=-3)
    for shape in ((50,), (0, 6)):
        with pytest.raises(ValueError, match="non-empty 2-D"):
            collapse_metrics(np.ones(shape), y[: shape[0]])
    with pytest.raises(ValueError, match="no samples"):
        collapse_metrics(H, y, num_classes=5)
    with pytest.raises(ValueError, match="at least 2 classes"):
        collapse_metrics(H, np.zeros(50, int))
    bad = H.copy()
    bad[7, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        collapse_metrics(bad, y)
    with pytest.raises(ValueError, match="coincide"):
        collapse_metrics(np.ones((50, 6)), y)
    with pytest.raises(ValueError, match="classifier"):
        collapse_metrics(H, y, classifier=np.ones((3, 5)))


def test_jax_input_and_to_dict(rng):

    import jax.numpy as jnp

    H, y = _features(rng, 100, 10, 4)
    a = collapse_metrics(jnp.asarray(H, jnp.float32), jnp.asarray(y), predictions=y)
    b = collapse_metrics(H.astype(np.float32), y, predictions=y)
    assert a == b
    d = json.loads(json.dumps(a.to_dict()))
    assert d["nc3"] is None and d["ncc_mismatch"] is not None and d["num_classes"] == 4
    assert CollapseMetrics.from_dict(d) == a  # the JSON form reads back as the same metrics


def test_integral_float_labels_and_any_chunk_give_the_same_metrics(rng):
    H, y = _features(rng, 50, 6, 3)
    ref = collapse_metrics(H, y)
    assert collapse_metrics(H, y.astype(np.float64)) == ref
    chunked = collapse_metrics(H, y, chunk_size=1)
    for name in METRICS:
        np.testing.assert_allclose(getattr(chunked, name), getattr(ref, name), rtol=1e-5)


def test_sharded_labels_out_of_range_raise(rng):
    """``Rows`` features take the device-side label check (``label_counts``)."""
    from dnc_jax import data_mesh
    from dnc_jax.sharding import as_rows

    H, y = _features(rng, 50, 6, 3)
    rows = as_rows(H.astype(np.float32), data_mesh("all"))
    assert collapse_metrics(rows, y).num_classes == 3
    for bad in (np.where(y == 2, 3, y), np.where(y == 2, -2, y)):
        with pytest.raises(ValueError, match=r"lie in 0\.\.2"):
            collapse_metrics(rows, bad, num_classes=3)


def test_rank_cut_is_relative_to_the_largest_singular_value(rng, x64):
    """Centred class means with singular values 1, 1e-2, 5e-6: ``rtol = 1e-4`` keeps two."""
    C, d = 4, 8
    U = np.linalg.qr(np.c_[np.ones(C), rng.standard_normal((C, C - 1))])[0][:, 1:]  # _|_ 1
    V = np.linalg.qr(rng.standard_normal((d, C - 1)))[0]
    means = 5.0 + U @ np.diag([1.0, 1e-2, 5e-6]) @ V.T
    y = np.arange(40) % C
    noise = rng.standard_normal((40, d))
    noise -= np.stack([noise[y == c].mean(axis=0) for c in range(C)])[y]
    H = means[y] + 0.1 * noise
    assert collapse_metrics(H, y, rtol=1e-4).nc1_pinv_rank == 2
    assert collapse_metrics(H, y, rtol=1e-7).nc1_pinv_rank == 3


def test_classes_sharing_a_mean_warn_at_the_callers_line(rng):
    y = np.arange(60) % 3
    H = rng.integers(-3, 4, (60, 5)).astype(np.float32)  # small integers: sums are exact
    H[y == 1] = H[y == 0][::-1]
    H[y == 2] += 10.0
    with pytest.warns(RuntimeWarning, match="share a mean") as caught:
        got = collapse_metrics(H, y)
    assert got.cdnv == np.inf and caught[0].filename == __file__


@pytest.mark.parametrize("path", ["streamed", "sharded"])
def test_unbalanced_classes_match_float64_reference(rng, x64, path):
    """Class counts 10 / 25 / 45: the global mean is the mean of the class means (not of
    the samples) and the total scatter is not within + between; every metric equals the
    float64 reference, streamed in chunks of 13 rows and sharded over 4 devices."""
    from dnc_jax import data_mesh
    from dnc_jax.sharding import as_rows

    counts = np.array([10, 25, 45])
    y = rng.permutation(np.repeat(np.arange(3), counts))
    d = 7
    means = rng.standard_normal((3, d)) * 3
    H = means[y] + rng.standard_normal((len(y), d))
    W = rng.standard_normal((3, d))
    preds = rng.integers(0, 3, len(y))
    ref = reference(H, y, 3, W, preds, rcond=1e-6)
    # the situation is real: both wrong conventions differ from the reference
    sample_mean_total = np.mean(np.sum((H - H.mean(axis=0)) ** 2, axis=1))
    assert abs(sample_mean_total - ref["trace_total"]) > 1e-3 * ref["trace_total"]
    assert abs(ref["trace_within"] + ref["trace_between"] - ref["trace_total"]) > 1e-3 * ref["trace_total"]
    features = H if path == "streamed" else as_rows(H, data_mesh("all"))
    got = collapse_metrics(features, y, classifier=W, predictions=preds, chunk_size=13,
                           rtol=1e-6)
    for name, value in ref.items():
        np.testing.assert_allclose(getattr(got, name), value, rtol=1e-10, atol=1e-14, err_msg=name)


@pytest.mark.slow
def test_official_convention_equals_the_scripts_formulas(rng, x64):
    """``nc1_official`` and the trace ratios equal get_class_variance of the official
    scripts (nc_nn_ratio.py lines 249-285 at eee0604), written out in float64 here:
    Sigma_B over C, Sigma_W and Sigma_T over C n, mu_G the mean of the class means; on
    unbalanced classes too. A Deep RFM record carries them."""
    H, y = _features(rng, 90, 7, 3)
    y = np.concatenate([y, np.zeros(12, y.dtype)])  # unbalanced
    H = np.concatenate([H, rng.standard_normal((12, 7)) + 1.0])
    C, n = 3, len(y)
    means = np.stack([H[y == c].mean(0) for c in range(C)])
    mu_g = means.mean(0)
    cov_b = np.sum((means - mu_g) ** 2) / C
    cov_w = sum(np.sum((H[y == c] - means[c]) ** 2) for c in range(C)) / (C * n)
    cov_t = sum(np.sum((H[y == c] - mu_g) ** 2) for c in range(C)) / (C * n)
    m = collapse_metrics(H, y)
    d = m.to_dict()
    np.testing.assert_allclose(d["nc1_official"], cov_w / cov_b, rtol=ROUNDING[F64])
    np.testing.assert_allclose(d["within_total_official"], cov_w / cov_t, rtol=ROUNDING[F64])
    np.testing.assert_allclose(d["between_total_official"], cov_b / cov_t, rtol=ROUNDING[F64])
    np.testing.assert_allclose(d["nc1_official"], d["nc1"] / C, rtol=ROUNDING[F64])

    from dnc_jax import deep_rfm

    records = deep_rfm(H.astype(np.float32), y, depth=1, width=8)
    for point in ("input", "projected", "output"):
        rec = records[0].to_json()[point]  # the record's JSON form carries both
        np.testing.assert_allclose(rec["nc1_official"], rec["nc1"] / C, rtol=ROUNDING[F64])
