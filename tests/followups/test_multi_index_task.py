"""The multi-index follow-up's task: its links, its data, the coherence of its subspace."""

import numpy as np
import pytest
from tolerances import F64, ROUNDING

from dnc_jax.followups.multi_index_task import coherence, multi_index_regression, multi_index_target


def test_multi_index_targets():
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((40, 4))
    pairs = sum(Z[:, i] * Z[:, j] for i in range(4) for j in range(i + 1, 4))
    np.testing.assert_allclose(multi_index_target(Z, "pairs_prod"), pairs + Z.prod(1), rtol=ROUNDING[F64])
    np.testing.assert_allclose(multi_index_target(Z, "sum_prod"), Z.sum(1) + Z.prod(1), rtol=ROUNDING[F64])
    with pytest.raises(ValueError, match="target"):
        multi_index_target(Z, "cubic")
    X, y, U = multi_index_regression(60, 12, 3, noise=0.0, seed=4)
    np.testing.assert_allclose(U @ U.T, np.eye(3), atol=ROUNDING[F64])
    np.testing.assert_allclose(y, multi_index_target(X.astype(np.float64) @ U.T), rtol=1e-5, atol=1e-5)
    assert coherence(np.eye(12)[:3]) == pytest.approx(4.0)  # d / r: the coordinate subspace
    assert coherence(np.full((1, 12), 12**-0.5)) == pytest.approx(1.0)  # spread evenly


def test_multi_index_data():
    X, y, U = multi_index_regression(50, 8, 3, subspace="coordinate", target="sum_prod", noise=0.0)
    assert set(np.unique(X)) == {-1.0, 1.0}
    np.testing.assert_allclose(y, X[:, :3].sum(1) + X[:, :3].prod(1), rtol=1e-6)
    Xg, yg, Ug = multi_index_regression(50, 8, 3, inputs="gaussian", target="sum_prod", noise=0.0)
    np.testing.assert_allclose(Ug @ Ug.T, np.eye(3), atol=ROUNDING[F64])
    Z = Xg.astype(np.float64) @ Ug.T
    np.testing.assert_allclose(yg, Z.sum(1) + Z.prod(1), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="inputs"):
        multi_index_regression(5, 4, inputs="sphere")
    with pytest.raises(ValueError, match="subspace"):
        multi_index_regression(5, 4, subspace="sparse")
