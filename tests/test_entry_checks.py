"""One input contract per public function, checked once at its entry: the loops below an
entry (RFM's steps and final fit, Deep RFM's layers) trust the rows it checked and the
features they make themselves, so a training set is scanned for NaN once per call, not
once per step. A custom feature map is user code: its features are checked where they
are made, by name."""

import jax.numpy as jnp
import numpy as np
import pytest

import dnc_jax as dj
from dnc_jax import _checks


@pytest.fixture
def finite_checks(monkeypatch):
    """Every ``_checks.check_finite`` call as ``(name, shape)``."""
    seen = []
    real = _checks.check_finite

    def spy(name, X):
        seen.append((name, tuple(np.shape(X))))
        return real(name, X)

    monkeypatch.setattr(_checks, "check_finite", spy)
    return seen


def _task(rng, n=96, d=6, C=3):
    y = np.arange(n) % C
    X = rng.standard_normal((n, d)).astype(np.float32) + 2.0 * np.eye(C, d)[y]
    return X, y


@pytest.mark.parametrize("solver, samples", [("cholesky", None), ("cg", 40), ("cg", "auto")])
def test_fit_rfm_checks_its_rows_once_for_all_its_fits(rng, finite_checks, solver, samples):
    """Three AGOP steps and the final fit (Cholesky with the shared kernel, CG with a
    sampled or adaptive AGOP): ``X`` and ``Y`` are checked once each."""
    X, y = _task(rng)
    Y = dj.data.one_hot_pm1(y, 3)
    fit = dj.fit_rfm(X, Y, iters=3, bandwidth=5.0, solver=dj.SolverOptions(solver),
                     agop_samples=samples)
    assert len(fit.history) == 4
    assert finite_checks == [("X", X.shape), ("Y", Y.shape)]


def test_the_estimator_checks_its_rows_once(rng, finite_checks):
    """``RFMClassifier.fit``: scikit-learn's validation, then ``fit_rfm``'s one check."""
    X, y = _task(rng)
    dj.RFMClassifier(iters=3, bandwidth=5.0).fit(X, y)
    assert finite_checks == [("X", X.shape), ("Y", (X.shape[0], 3))]


def test_deep_rfm_checks_its_rows_once_for_all_its_layers(rng, finite_checks):
    """Three layers: the training and test rows are checked once each at the entry (the
    layers fit on features made from them)."""
    X, y = _task(rng)
    records = dj.deep_rfm(X, y, X[:30], y[:30], depth=3, width=16)
    assert len(records) == 3
    rows = [(name, shape[1]) for name, shape in finite_checks if shape[1] == X.shape[1]]
    assert rows == [("X_train", X.shape[1]), ("X_test", X.shape[1])]


def test_a_custom_feature_map_that_makes_nan_is_named_at_its_layer(rng):
    """A feature map is user code: NaN features are refused at the layer that made them
    (here the log of negative pre-activations), before any fit on them."""
    X, y = _task(rng)

    def log_features(pre):
        return jnp.log(pre)

    with pytest.raises(ValueError, match="log_features made NaN or infinite features at layer 0"):
        dj.deep_rfm(X, y, depth=2, width=16, features=log_features)
