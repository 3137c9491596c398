"""Grokking with the network of rfm-grokking's train_net.py, and its NFA per epoch."""

import numpy as np
import pytest

from dnc_jax.followups import NetGrokkingConfig, grokking_net


@pytest.mark.slow
def test_the_network_groks_p13_and_reports_its_nfa(x64):
    """p = 13, 70% of the pairs, the script's other settings: the training set is fitted
    within 50 epochs while test accuracy stays near 0 (at most 0.15; chance is 1/13), then
    test accuracy climbs to >= 0.9 by epoch 600 (measured: 1.0 at 575, seed 0). The NFA is
    recorded at every measured epoch, a correlation in [-1, 1]; the feature matrix of the
    trained network correlates with its AGOP's root (measured 0.996)."""
    records = grokking_net(NetGrokkingConfig(p=13, train_fraction=0.7, epochs=600,
                                             measure_every=50))
    assert len(records) == 600 and records[-1]["epoch"] == 599
    early = records[:50]
    assert max(r["train_accuracy"] for r in early) == 1.0
    assert max(r["test_accuracy"] for r in early) <= 0.15
    assert records[-1]["test_accuracy"] >= 0.9
    measured = [r for r in records if "nfa_corr" in r]
    assert [r["epoch"] for r in measured] == list(range(0, 600, 50)) + [599]
    assert all(-1 <= r["nfa_corr"] <= 1 and -1 <= r["nfa_no_diag_corr"] <= 1 for r in measured)
    assert measured[-1]["nfa_corr"] > 0.9


def test_bad_settings_and_float32_are_refused():
    with pytest.raises(ValueError, match="activation must be one of"):
        NetGrokkingConfig(activation="tanh")
    with pytest.raises(ValueError, match="width must be >= 1"):
        NetGrokkingConfig(width=0)
    import jax

    with jax.enable_x64(False), pytest.raises(ValueError, match="float64"):
        grokking_net(NetGrokkingConfig(p=5, epochs=1))
    np.testing.assert_equal(NetGrokkingConfig().p, 61)  # the script's default
