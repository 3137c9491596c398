"""The scikit-learn RFM estimators."""

import json

import numpy as np
import pytest
from helpers import assert_batch_invariant
from sklearn.utils.estimator_checks import parametrize_with_checks

from dnc_jax import RFM, RFMIteration, data_mesh, fit_kernel_ridge, kernel_agop, matrix_power
from dnc_jax.estimators import RFMClassifier, RFMRegressor
from dnc_jax.predictor import predict_block


def test_bad_agop_samples_and_devices_raise(digits_rows):
    X, _, Y = digits_rows
    fit, _ = fit_kernel_ridge(X, Y, bandwidth=2.0)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="agop_samples"):
            kernel_agop(fit, X, samples=bad)
    with pytest.raises(ValueError, match="devices"):
        data_mesh(99)
    with pytest.raises(ValueError, match="devices"):
        data_mesh("some")


def test_rfm_classifier_with_nystrom_and_sampled_agop(digits_rows):
    X, y, _ = digits_rows
    model = RFMClassifier(bandwidth=2.0, iters=2, centers=200, agop_samples=300, devices="all")
    model.fit(X, y)
    assert [h.solve.solver for h in model.history_] == ["nystrom"] * 3
    assert model.score(X, y) > 0.9


# Every scikit-learn check passes, the subset and sample-order invariance checks included
# (bit for bit: predictions run in fixed-size padded blocks, tests/test_predictor.py).
@pytest.mark.slow
@parametrize_with_checks([RFMClassifier(iters=1), RFMRegressor(iters=1)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.slow
def test_rfm_beats_kernel_ridge_on_digits(digits):
    kw = dict(kernel="laplace", bandwidth=5.0, reg=1e-3)
    plain = RFM(iters=0, **kw).fit(digits.X_train, digits.y_train)
    rfm = RFM(iters=3, **kw).fit(digits.X_train, digits.y_train)
    plain_acc = plain.score(digits.X_test, digits.y_test)
    rfm_acc = rfm.score(digits.X_test, digits.y_test)
    assert rfm_acc > plain_acc + 0.005, (rfm_acc, plain_acc)
    assert rfm.transform_.shape == (64, 64)


@pytest.mark.slow
def test_rfm_validation_keeps_best_iteration(digits):
    X, y = digits.X_train, digits.y_train
    model = RFM(iters=3, bandwidth=5.0).fit(X[:800], y[:800], X_val=X[800:], y_val=y[800:])
    scores = [h.val_score for h in model.history_]
    assert len(scores) == 4 and model.best_iter_ == int(np.argmax(scores))
    reg = RFM(task="regression", iters=1, bandwidth=5.0).fit(X[:300], X[:300, 10])
    assert reg.predict(X[:5]).shape == (5,)


@pytest.mark.slow
def test_rfm_options_take_effect(digits):
    """Each option changes what it says: diag gives a diagonal transform, agop_power sets
    the transform to that power of the AGOP, normalize="trace" a unit-trace AGOP, centred
    a different AGOP, the Gaussian kernel its own predictor; all still classify."""
    X, y = digits.X_train[:400], digits.y_train[:400]
    Xv, yv = digits.X_test[:200], digits.y_test[:200]
    kw = dict(bandwidth=5.0, iters=1)
    base = RFM(**kw).fit(X, y)
    diag = RFM(diag=True, **kw).fit(X, y)
    T = np.asarray(diag.transform_)
    assert np.count_nonzero(T - np.diag(np.diag(T))) == 0 and diag.agop_.ndim == 1
    quarter = RFM(agop_power=0.25, **kw).fit(X, y)
    np.testing.assert_allclose(quarter.transform_, matrix_power(quarter.agop_, 0.25),
                               rtol=1e-5, atol=1e-6)
    trace = RFM(normalize="trace", **kw).fit(X, y)
    assert np.trace(trace.agop_) == pytest.approx(1.0, rel=1e-5)
    centred = RFM(centered=True, **kw).fit(X, y)
    assert not np.allclose(centred.agop_ / np.abs(centred.agop_).max(), base.agop_, atol=1e-3)
    gauss = RFM(kernel="gaussian", **kw).fit(X, y)
    assert gauss.predictor_.kernel.name == "gaussian"
    for model in (base, diag, quarter, trace, centred, gauss):
        assert model.score(Xv, yv) > 0.85


def test_rfm_regression_with_validation_scores_what_history_says(digits):
    X = digits.X_train[:500]
    target = X[:, 20] - 0.5 * X[:, 36] + 0.3 * X[:, 10] * X[:, 42]
    model = RFM(task="regression", iters=2, bandwidth=8.0, reg=1e-2).fit(
        X[:400], target[:400], X_val=X[400:], y_val=target[400:])
    pred = model.predict(X[400:])
    mse = float(np.mean((pred - target[400:]) ** 2))
    assert model.history_[model.best_iter_].val_score == pytest.approx(-mse, rel=1e-5)
    assert [h.iter for h in model.history_] == [0, 1, 2]
    for h in model.history_:  # each record's JSON form reads back to the record
        assert RFMIteration.from_json(json.loads(json.dumps(h.to_json()))) == h
    r2 = 1 - mse / float(np.var(target[400:]))
    assert r2 > 0.8, r2


N_TEST = 2 * predict_block() + 37  # three blocks, the last one padded


@pytest.mark.slow
@pytest.mark.parametrize("Estimator", [RFMClassifier, RFMRegressor])
def test_estimator_outputs_are_batch_invariant(Estimator, rng):
    """What scikit-learn's subset and sample-order invariance checks ask, exactly."""
    X = rng.standard_normal((60, 5)).astype(np.float32)
    y = np.arange(60) % 3 if Estimator is RFMClassifier else X[:, 0] - 2 * X[:, 1]
    est = Estimator(iters=1).fit(X, y)
    out = est.decision_function if Estimator is RFMClassifier else est.predict
    Xtest = rng.standard_normal((N_TEST, 5)).astype(np.float32)
    assert_batch_invariant(out, Xtest, rng)
    assert_batch_invariant(est.predict, Xtest, rng)
