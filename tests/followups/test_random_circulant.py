"""Random circulant features (rfm-grokking's train_random_circulant_kernel.py)."""

import numpy as np
import pytest
import scipy.linalg

from dnc_jax.followups import GrokkingConfig, block_deviations
from dnc_jax.followups.random_circulant import (
    random_circulant_block,
    random_circulant_fit,
    random_circulant_metric,
)


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
def test_the_random_block_has_the_learned_metrics_form(op):
    """The block is circulant in the indexing where RFM's learned metric is (``task_blocks``):
    its ``ab`` deviation is 0 to rounding, that of an i.i.d. block is not; the metric is
    the real part of scipy's principal square root of the block matrix, and PSD."""
    p = 11
    C = random_circulant_block(p, op, np.random.default_rng(3))
    centre = np.eye(p) - 1.0 / p
    M = np.block([[centre, C], [C.T, centre]])
    assert block_deviations(M, p, op)["ab"] < 1e-28 + 1e-14
    iid = np.block([[centre, random_circulant_block(p, op, np.random.default_rng(3), "iid")],
                    [np.zeros((p, p)), centre]])
    assert block_deviations(iid, p, op)["ab"] > 0.5
    if op in ("*", "/"):  # residue 0 is outside the multiplicative group
        assert not C[0].any() and not C[:, 0].any()
    metric = random_circulant_metric(p, op, seed=3)
    # its square is M's PSD part, (M + |M|) / 2 with |M| = sqrtm(M^2) (scipy, another route)
    np.testing.assert_allclose(metric @ metric, (M + np.real(scipy.linalg.sqrtm(M @ M))) / 2,
                               atol=1e-6)
    # on M's positive eigenspace it is the script's real(sqrtm(M)); eigenvalues of M near
    # 0 make sqrtm lose about sqrt(eps) of accuracy, hence the tolerance
    evals, evecs = np.linalg.eigh(M)
    P = evecs[:, evals > 1e-6] @ evecs[:, evals > 1e-6].T
    np.testing.assert_allclose(metric, P @ np.real(scipy.linalg.sqrtm(M)) @ P, atol=1e-6)
    assert np.linalg.eigvalsh(metric).min() > -1e-12
    with pytest.raises(ValueError, match="structure"):
        random_circulant_block(p, op, np.random.default_rng(0), "toeplitz")


@pytest.mark.slow
@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
def test_random_circulant_features_generalise_and_iid_ones_do_not(x64, op):
    """One Gaussian kernel fit (published settings, p = 31, half the pairs), no RFM
    iterations: in a random circulant metric it generalises (test accuracy, mean over
    seeds 0-2 by op: 0.928-0.956, std <= 0.024; benchmarks/random_circulant.py), in an
    i.i.d. block of the same form it does not (0.001-0.068, as the identity metric). Both
    fit the training set."""
    config = GrokkingConfig(p=31, op=op)
    circulant = random_circulant_fit(config, seed=0)
    iid = random_circulant_fit(config, seed=0, structure="iid")
    assert circulant.record.train_accuracy == iid.record.train_accuracy == 1.0
    assert circulant.record.test_accuracy >= 0.9
    assert iid.record.test_accuracy <= 0.15
    assert (circulant.metric_seed, iid.structure) == (0, "iid")
