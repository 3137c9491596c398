"""dtype honoured: float64 in, float64 out with JAX's 64-bit mode on; otherwise one warning
that says how to turn it on."""

import jax
import numpy as np
import pytest

import dnc_jax
from dnc_jax import _checks


@pytest.fixture
def unwarned(monkeypatch):
    monkeypatch.setattr(_checks, "_warned_float64", False)


def _data(rng, n=60, d=5):
    X = rng.standard_normal((n, d))
    return X, (X[:, 0] > 0).astype(int)


def test_float64_stays_float64_with_x64(rng, x64, unwarned):
    X, y = _data(rng)
    model = dnc_jax.RFM(bandwidth=3.0, iters=1).fit(X, y)
    assert model.transform_.dtype == np.float64
    assert model.predictor_.coefs.dtype == np.float64
    pred = dnc_jax.fit_kernel_predictor(X, np.eye(2)[y], kernel="laplace", bandwidth=3.0,
                                        reg=1e-3)
    assert pred.coefs.dtype == np.float64 and pred.predict(X).dtype == np.float64
    assert dnc_jax.kernel_agop(pred, X).dtype == np.float64
    assert dnc_jax.fit_rfm(X, np.eye(2)[y], bandwidth=3.0, iters=1).transform.dtype == np.float64


def test_float64_without_x64_warns_once_and_says_how(rng, unwarned):
    assert not jax.config.jax_enable_x64
    X, y = _data(rng)
    with pytest.warns(_checks.Float64Warning, match="jax_enable_x64") as caught:
        model = dnc_jax.RFM(bandwidth=3.0, iters=1).fit(X, y)
        model.predict(X)
        dnc_jax.fit_kernel_predictor(X, np.eye(2)[y], kernel="laplace", bandwidth=3.0,
                                     reg=1e-3)
    assert len([w for w in caught if issubclass(w.category, _checks.Float64Warning)]) == 1
    assert model.transform_.dtype == np.float32


def test_float32_input_does_not_warn(rng, unwarned):
    import warnings

    X, y = _data(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error", _checks.Float64Warning)
        dnc_jax.RFM(bandwidth=3.0, iters=1).fit(X.astype(np.float32), y)
