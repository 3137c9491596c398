"""The neural-collapse toolkit's metrics (rhubarbwu/neural-collapse, commit c05a0b8) against
the formulas of its measure.py / kernels.py re-implemented here independently, dense, in
float64 numpy; the tiled forms against the dense ones."""

import numpy as np
import pytest
from tolerances import F64, ROUNDING

from dnc_jax import collapse_metrics
from dnc_jax.collapse_toolkit import (
    class_moments,
    hyperspherical_uniformity,
    ncc_agreement,
    ood_orthogonality,
    tiled_cdnv,
    uniform_duality,
)


def _means(rng, C=20, d=6):
    return rng.standard_normal((C, d)) * 2.0 + 0.5


def _reference_uniformity(M, kernel):
    """kernels.py kernel_stats: normalise the centred means (x / (||x|| + eps)), a kernel
    over every pair i < j, its mean and its variance (divided by the number of pairs)."""
    centred = M - M.mean(axis=0)
    U = centred / (np.linalg.norm(centred, axis=1, keepdims=True) + np.finfo(np.float64).eps)
    i, j = np.triu_indices(len(U), k=1)
    dist = np.linalg.norm(U[i] - U[j], axis=1)
    s = U.shape[1] - 2
    k = {"dist": dist, "log": np.log(dist ** -1.0), "riesz": np.sign(s) * dist ** (-float(s))}[kernel]
    return k.mean(), np.mean((k - k.mean()) ** 2)


@pytest.mark.parametrize("kernel", ["dist", "log", "riesz"])
@pytest.mark.parametrize("tile", [7, 20, 64])  # 3 tiles (the last padded), one exact, one larger
def test_hyperspherical_uniformity_equals_the_toolkits_formula(x64, rng, kernel, tile):
    M = _means(rng)
    mean, var = hyperspherical_uniformity(M, kernel=kernel, tile=tile)
    ref_mean, ref_var = _reference_uniformity(M, kernel)
    # float64 sums of ~190 terms: rounding ~1e-14 relative; the variance (a sum of squared
    # deviations around a shifted centre) as well
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-11)
    np.testing.assert_allclose(var, ref_var, rtol=1e-9)


def test_uniform_duality_and_ood_orthogonality_equal_the_toolkits_formulas(x64, rng):
    M, W = _means(rng), rng.standard_normal((20, 6))
    dots = np.sum(W * (M - M.mean(axis=0)), axis=1)  # similarities(W, M, mG)
    ref = np.sum((dots - dots.mean()) ** 2) / (len(dots) - 1)  # torch.var: n - 1
    np.testing.assert_allclose(uniform_duality(W, M), ref, rtol=ROUNDING[F64])
    ood = rng.standard_normal(6)
    cos = np.array([m @ ood / np.sqrt((m @ m) * (ood @ ood)) for m in M])
    np.testing.assert_allclose(ood_orthogonality(M, ood), np.mean(np.abs(cos)), rtol=ROUNDING[F64])


@pytest.mark.parametrize("chunk", [7, 1000])
def test_ncc_agreement_on_held_out_rows_equals_the_toolkits_rule(x64, rng, chunk):
    """DecAccumulator: the linear decision argmax x W^T against the nearest training mean;
    weighted by class, the share of all rows."""
    M, W = _means(rng, C=5), rng.standard_normal((5, 6))
    X = M[rng.integers(0, 5, 60)] + 1.5 * rng.standard_normal((60, 6))  # held-out rows
    linear = np.argmax(X @ W.T, axis=1)
    nearest = np.argmin(((X[:, None, :] - M[None]) ** 2).sum(-1), axis=1)
    expected = np.mean(linear == nearest)
    assert 0 < expected < 1  # both outcomes occur
    assert ncc_agreement(X, W, M, chunk_size=chunk) == expected


def test_class_moments_and_tiled_cdnv_equal_the_dense_metrics(x64, rng):
    C, n = 23, 400
    y = rng.permutation(np.arange(n) % C)
    H = rng.standard_normal((C, 8))[y] * 3 + rng.standard_normal((n, 8)) + 1e3  # an offset
    moments = class_moments(H, y, chunk_size=64)
    for c in range(C):
        rows = H[y == c]
        np.testing.assert_allclose(moments.means[c], rows.mean(axis=0), rtol=ROUNDING[F64])
        np.testing.assert_allclose(moments.variances[c],
                                   np.mean(np.sum((rows - rows.mean(0)) ** 2, axis=1)), rtol=1e-9)
    dense = collapse_metrics(H, y).cdnv
    for tile in (5, 23, 100):
        np.testing.assert_allclose(tiled_cdnv(moments.means, moments.variances, tile=tile),
                                   dense, rtol=1e-10)


def test_bad_input_gets_one_clear_error(rng):
    M = _means(rng)
    with pytest.raises(ValueError, match="kernel must be one of"):
        hyperspherical_uniformity(M, kernel="gauss")
    with pytest.raises(ValueError, match="at least 2 rows"):
        hyperspherical_uniformity(M[:1])
    with pytest.raises(ValueError, match="tile must be a positive"):
        tiled_cdnv(M, np.ones(20), tile=0)
    with pytest.raises(ValueError, match="classifier must have the means' shape"):
        uniform_duality(M[:, :3], M)
    with pytest.raises(ValueError, match="variances must be"):
        tiled_cdnv(M, np.ones(19))
    with pytest.raises(ValueError, match="ood_mean must be"):
        ood_orthogonality(M, np.zeros(6))
    with pytest.raises(ValueError, match="NaN"):
        hyperspherical_uniformity(np.where(np.eye(20, 6) > 0, np.nan, M))
    with pytest.raises(ValueError, match="have no samples"):
        class_moments(rng.standard_normal((10, 3)), np.arange(10) % 2, num_classes=3)
