"""RFM and Deep RFM."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import without_time
from sklearn.utils.estimator_checks import parametrize_with_checks

from dnc_jax import RFM, deep_rfm, fit_kernel_predictor, kernel_agop, matrix_power
from dnc_jax.data import load_dataset, prepare
from dnc_jax.estimators import RFMClassifier, RFMRegressor
from dnc_jax.rfm import fit_with_agop


# Every scikit-learn check passes, the subset and sample-order invariance checks included
# (bit for bit: predictions run in fixed-size padded blocks, tests/test_batch_invariance.py).
@parametrize_with_checks([RFMClassifier(iters=1), RFMRegressor(iters=1)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    Xtr, ytr = load_dataset("digits")
    Xte, yte = load_dataset("digits", split="test")
    return prepare(Xtr, ytr, Xte, yte)


def test_fit_with_agop_equals_kernel_agop(rng):
    X = rng.standard_normal((50, 8)).astype(np.float32)
    Y = rng.standard_normal((50, 3)).astype(np.float32)
    A = rng.standard_normal((8, 8))
    T = (A @ A.T / 8).astype(np.float32)
    Z = X @ T
    pred, agop_x, _ = fit_with_agop(Z, Y, bandwidth=3.0, reg=1e-3, transform=T, batch_size=16)
    # the same predictor seen on x has metric T^2; its closed form must agree
    on_x = fit_kernel_predictor(X, Y, bandwidth=3.0, reg=1e-3, M=T @ T)
    ref = kernel_agop(on_x, X)
    # measured 3.9e-7 and 2.0e-6 (float32)
    assert float(jnp.linalg.norm(agop_x - ref) / jnp.linalg.norm(ref)) < 1e-5
    np.testing.assert_allclose(pred.predict(Z), on_x.predict(X), rtol=1e-5, atol=2e-5)


def test_rfm_beats_kernel_ridge_on_digits(digits):
    kw = dict(kernel="laplace", bandwidth=5.0, reg=1e-3)
    plain = RFM(iters=0, **kw).fit(digits.X_train, digits.y_train)
    rfm = RFM(iters=3, **kw).fit(digits.X_train, digits.y_train)
    plain_acc = plain.score(digits.X_test, digits.y_test)
    rfm_acc = rfm.score(digits.X_test, digits.y_test)
    assert rfm_acc > plain_acc + 0.005, (rfm_acc, plain_acc)
    assert rfm.transform_.shape == (64, 64)


def test_rfm_validation_keeps_best_iteration(digits):
    X, y = digits.X_train, digits.y_train
    model = RFM(iters=3, bandwidth=5.0).fit(X[:800], y[:800], X_val=X[800:], y_val=y[800:])
    scores = [h["val_score"] for h in model.history_]
    assert len(scores) == 4 and model.best_iter_ == int(np.argmax(scores))
    reg = RFM(task="regression", iters=1, bandwidth=5.0).fit(X[:300], X[:300, 10])
    assert reg.predict(X[:5]).shape == (5,)


def test_deep_rfm_is_deterministic_and_collapses(digits):
    kw = dict(depth=5, width=256, seed=3)
    a = deep_rfm(digits.X_train, digits.y_train, digits.X_test, digits.y_test, **kw)
    b = deep_rfm(digits.X_train, digits.y_train, digits.X_test, digits.y_test, **kw)
    assert [without_time(r) for r in a] == [without_time(r) for r in b]
    first, last = a[0]["input"]["nc1"], a[-1]["output"]["nc1"]
    assert last * 10 <= first, (first, last)
    assert all(r["test_accuracy"] > 0.8 for r in a)
    json.dumps(a)  # records are plain JSON


def test_deep_rfm_options(digits):
    X, y = digits.X_train[:300], digits.y_train[:300]
    cos = deep_rfm(X, y, depth=2, width=128, features="cosine", gamma=0.5)
    gauss = deep_rfm(X, y, depth=2, width=128, weights="gaussian", kernel="gaussian")
    assert cos[0]["test_accuracy"] is None and len(gauss) == 2
    with pytest.raises(ValueError, match="depth"):
        deep_rfm(X, y, depth=0)
    with pytest.raises(ValueError, match="rows"):
        deep_rfm(X, y[:-1], depth=1)


@pytest.mark.parametrize("features,weights", [("relu", "uniform"), ("relu", "gaussian"),
                                              ("cosine", "uniform")])
def test_deep_rfm_layer_rebuilt_by_hand(digits, features, weights):
    """One Deep RFM layer from the public pieces (unit rows, a Laplace fit, the AGOP divided
    by its largest entry, its square root, the seeded random map by its formula: uniform
    or Gaussian ReLU weights of scale 1/sqrt(d), or ``sqrt(2/D) cos(u W^T + b)`` with
    Cauchy ``W`` of scale gamma and ``b ~ U(0, 2 pi)``) equals the layer's record; another
    seed changes the map and the output."""
    from dnc_jax import collapse_metrics, matrix_power

    X, y = digits.X_train[:300], digits.y_train[:300]
    options = dict(depth=1, width=48, features=features, weights=weights, gamma=0.7)
    (record,) = deep_rfm(X, y, seed=5, **options)
    Xu = X / np.linalg.norm(X, axis=1, keepdims=True)
    Y = np.where(np.arange(10)[None, :] == y[:, None], 1.0, -1.0).astype(np.float32)
    pred = fit_kernel_predictor(Xu, Y, kernel="laplace", bandwidth=2.0, reg=1e-3)
    M = kernel_agop(pred, Xu, normalize="max")
    projected = np.asarray(Xu, np.float64) @ np.asarray(matrix_power(M, 0.5), np.float64)
    k_w, k_b = jax.random.split(jax.random.fold_in(jax.random.key(5), 0))
    d, D = X.shape[1], 48
    if features == "cosine":
        W = np.asarray(jax.random.cauchy(k_w, (D, d), jnp.float32), np.float64) * 0.7
        phase = np.asarray(jax.random.uniform(k_b, (D,), jnp.float32, maxval=2 * np.pi))
        out = np.sqrt(2.0 / D) * np.cos(projected @ W.T + phase[None, :])
    else:
        if weights == "uniform":
            W = jax.random.uniform(k_w, (D, d), jnp.float32, -1 / np.sqrt(d), 1 / np.sqrt(d))
        else:
            W = jax.random.normal(k_w, (D, d), jnp.float32) / np.sqrt(d)
        out = np.maximum(projected @ np.asarray(W, np.float64).T, 0.0)
    for point, H in (("input", Xu), ("projected", projected), ("output", out)):
        ref = collapse_metrics(np.asarray(H, np.float32), y).to_dict()
        assert record[point]["nc1"] == pytest.approx(ref["nc1"], rel=1e-4), point
        assert record[point]["nc2"] == pytest.approx(ref["nc2"], rel=1e-3), point
        # the ratios above cannot see a feature scale (sqrt(2/D), 1/sqrt(d)); traces can
        assert record[point]["trace_within"] == pytest.approx(ref["trace_within"], rel=1e-4)
    assert record["train_accuracy"] == float(np.mean(np.argmax(np.asarray(pred.predict(Xu)), 1) == y))
    (other,) = deep_rfm(X, y, seed=6, **options)
    assert other["projected"]["nc1"] == pytest.approx(record["projected"]["nc1"], rel=1e-6)
    assert abs(other["output"]["nc1"] - record["output"]["nc1"]) > 1e-3 * record["output"]["nc1"]


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
    assert gauss.predictor_.kernel == "gaussian"
    for model in (base, diag, quarter, trace, centred, gauss):
        assert model.score(Xv, yv) > 0.85


def test_rfm_regression_with_validation_scores_what_history_says(digits):
    X = digits.X_train[:500]
    target = X[:, 20] - 0.5 * X[:, 36] + 0.3 * X[:, 10] * X[:, 42]
    model = RFM(task="regression", iters=2, bandwidth=8.0, reg=1e-2).fit(
        X[:400], target[:400], X_val=X[400:], y_val=target[400:])
    pred = model.predict(X[400:])
    mse = float(np.mean((pred - target[400:]) ** 2))
    assert model.history_[model.best_iter_]["val_score"] == pytest.approx(-mse, rel=1e-5)
    r2 = 1 - mse / float(np.var(target[400:]))
    assert r2 > 0.8, r2


def test_defaults_are_the_papers_and_agree_across_entry_points():
    """Deep RFM's defaults are the paper's (module docstring: Laplace, L = 2, ridge 1e-3,
    ReLU of uniform weights, width 512, depth 10), and ``deep_rfm``, ``DeepRFMConfig``,
    ``SolverOptions`` and ``fit_kernel_ridge`` default the options they share alike
    (``deep_rfm`` hands its arguments to ``DeepRFMConfig`` by position)."""
    import dataclasses
    import inspect

    from dnc_jax.deep_rfm_model import DeepRFMConfig
    from dnc_jax.solvers import SolverOptions, fit_kernel_ridge

    c = DeepRFMConfig()
    assert (c.depth, c.width, c.kernel, c.bandwidth, c.reg) == (10, 512, "laplace", 2.0, 1e-3)
    assert (c.features, c.weights, c.gamma, c.seed, c.dtype) == ("relu", "uniform", 1.0, 0, "float32")
    assert (c.solver, c.centers, c.agop_samples, c.refit_accuracy) == ("auto", None, None, False)
    fields = {f.name: f.default for f in dataclasses.fields(DeepRFMConfig)}
    params = inspect.signature(deep_rfm).parameters
    assert {k: params[k].default for k in fields} == fields
    assert list(params)[4:4 + len(fields)] == list(fields)  # same order as the positional call
    solver = {f.name: f.default for f in dataclasses.fields(SolverOptions)}
    fit = inspect.signature(fit_kernel_ridge).parameters
    assert {k: fit[k].default for k in solver} == solver
    # fit_kernel_predictor's documented defaults: Laplace, L = 1, reg = 1e-3
    assert {k: fit[k].default for k in ("kernel", "bandwidth", "reg", "seed", "M", "mesh")} == {
        "kernel": "laplace", "bandwidth": 1.0, "reg": 1e-3, "seed": 0, "M": None, "mesh": None}
    assert c.solver_options() == SolverOptions(c.solver, c.centers, c.tol, c.max_iter,
                                               c.precond_rank)
    assert (c.tol, c.max_iter, c.precond_rank) == (solver["tol"], solver["max_iter"],
                                                   solver["precond_rank"])


def test_deep_rfm_config_boundaries():
    """Each check's boundary value passes and the value past it raises; the config is
    frozen (hashable, safe as a default argument)."""
    import dataclasses

    from dnc_jax.deep_rfm_model import DeepRFMConfig

    for ok in (dict(agop_samples=1), dict(width=1), dict(width=None), dict(reg=0.0),
               dict(bandwidth=0.5), dict(depth=1), dict(gamma=0.0),  # gamma: cosine only
               dict(features="cosine", gamma=1e-3)):
        DeepRFMConfig(**ok).validate()
    for bad in (dict(agop_samples=0), dict(width=0), dict(reg=-1e-9), dict(bandwidth=0.0),
                dict(depth=0), dict(features="cosine", gamma=0.0), dict(features="tanh"),
                dict(weights="normal"), dict(dtype="float16"), dict(solver="lu")):
        with pytest.raises(ValueError):
            DeepRFMConfig(**bad).validate()
    with pytest.raises(dataclasses.FrozenInstanceError):
        DeepRFMConfig().depth = 3


def test_unit_rows_random_map_padding_and_host_rows():
    """Rows scaled to unit norm whatever their norm (zero rows stay zero, never NaN); the
    random map leaves the padding rows past ``n`` at zero; ``host_rows`` passes ``None`` and
    numpy through and gathers ``Rows``' real rows."""
    from dnc_jax import data_mesh
    from dnc_jax.deep_rfm_model import _layer_map, _unit_rows, _unit_rows_on_mesh, host_rows
    from dnc_jax.sharding import Rows, as_rows

    X = jnp.asarray([[3.0, 4.0], [0.0, 0.0], [0.3, 0.4], [1e-3, 0.0]])
    unit = [[0.6, 0.8], [0.0, 0.0], [0.6, 0.8], [1.0, 0.0]]
    np.testing.assert_allclose(np.asarray(_unit_rows(X)), unit, rtol=1e-6)
    mesh = data_mesh("all")
    rows = as_rows(X, mesh)
    np.testing.assert_allclose(host_rows(Rows(_unit_rows_on_mesh(rows.data, mesh), 4)), unit,
                               rtol=1e-6)
    Xp = as_rows(jnp.ones((6, 3)), mesh)
    W = jnp.ones((5, 3))
    for features in ("relu", "cosine"):
        projected, out = _layer_map(Xp.data, jnp.eye(3), W, jnp.zeros(5), features, 4, mesh)
        out = np.asarray(out)
        np.testing.assert_array_equal(np.asarray(projected)[:6], 1.0)
        assert np.all(out[:4] != 0.0) and np.all(out[4:] == 0.0)
    assert host_rows(None) is None
    H = np.arange(14.0).reshape(7, 2)
    assert host_rows(H) is H
    np.testing.assert_array_equal(host_rows(as_rows(H, data_mesh("all"))), H)


def test_spectrum_summary():
    from dnc_jax.deep_rfm_model import spectrum_summary

    evals = np.arange(13.0)[::-1][np.random.default_rng(0).permutation(13)]
    out = spectrum_summary(evals)
    assert out["top_eigenvalues"] == list(np.arange(12.0, 2.0, -1.0))  # ten, descending
    assert out["spectrum"] == list(np.arange(12.0, -1.0, -1.0))
    assert out["effective_rank"] == pytest.approx(78.0**2 / np.sum(np.arange(13.0) ** 2), rel=1e-12)
    assert spectrum_summary(np.array([0.0, 4.0]), top=1) == {
        "top_eigenvalues": [4.0], "effective_rank": 1.0, "spectrum": [4.0, 0.0]}
    assert spectrum_summary(np.zeros(3))["effective_rank"] == 0.0
    assert spectrum_summary(np.array([0.25, 0.25]))["effective_rank"] == 2.0  # trace below 1


def test_deep_rfm_layer_states_phases_and_sampled_agop_seeds(digits):
    """States count the layers done; the phase seconds are non-negative and add up to at
    most the layer's seconds, which fit in the wall time; layer ``l`` samples its AGOP rows
    with ``seed + l`` (rebuilt by hand for layer 1; ``seed - 1`` would differ)."""
    import time

    from dnc_jax.data import one_hot_pm1
    from dnc_jax.deep_rfm_model import DeepRFMConfig, _unit_rows, deep_rfm_layers, spectrum_summary
    from dnc_jax.gradient_outer_product import psd_eigh

    X, y = digits.X_train[:200], digits.y_train[:200]
    config = DeepRFMConfig(depth=2, width=48, agop_samples=60, seed=5)
    steps, start = [], time.perf_counter()
    for record, state in deep_rfm_layers(X, y, config=config):
        steps.append((record, state, time.perf_counter() - start))
        start = time.perf_counter()
    assert [s.layer for _, s, _ in steps] == [1, 2]
    for record, _, wall in steps:
        phases = record["phase_seconds"]
        assert min(phases.values()) >= 0 and sum(phases.values()) <= record["seconds"] <= wall
    X1 = np.asarray(_unit_rows(jnp.asarray(np.asarray(steps[0][1].X_train.valid()))))

    def top(seed):
        _, M, _ = fit_with_agop(X1, one_hot_pm1(y, 10), bandwidth=2.0, reg=1e-3,
                                batch_size=1024, normalize="max", agop_samples=60, seed=seed)
        return np.array(spectrum_summary(psd_eigh(M)[0])["top_eigenvalues"])

    got = np.array(steps[1][0]["agop"]["top_eigenvalues"])
    np.testing.assert_allclose(got, top(6), rtol=1e-4)
    assert not np.allclose(got, top(4), rtol=1e-2)


def test_refit_accuracy_equals_the_layer_rebuilt_by_hand(digits):
    """``refit_test_accuracy``: a kernel predictor refitted on the projected training rows
    ``X M^(1/2)``, evaluated on the projected test rows, counted on 400 test rows (one
    wrong row moves it by 0.0025); the same on unprojected test rows would differ."""
    X, y = digits.X_train[:300], digits.y_train[:300]
    Xt, yt = digits.X_test[:400], digits.y_test[:400]
    (record,) = deep_rfm(X, y, Xt, yt, depth=1, width=48, refit_accuracy=True)
    Xu = X / np.linalg.norm(X, axis=1, keepdims=True)
    Xtu = Xt / np.linalg.norm(Xt, axis=1, keepdims=True)
    Y = np.where(np.arange(10)[None, :] == y[:, None], 1.0, -1.0).astype(np.float32)
    M = kernel_agop(fit_kernel_predictor(Xu, Y, bandwidth=2.0, reg=1e-3), Xu, normalize="max")
    root = np.asarray(matrix_power(M, 0.5))
    refit = fit_kernel_predictor(Xu @ root, Y, bandwidth=2.0, reg=1e-3)

    def accuracy(Z, labels):
        return float(np.mean(np.argmax(np.asarray(refit.predict(Z)), axis=1) == labels))

    assert record["refit_test_accuracy"] == accuracy(Xtu @ root, yt)
    assert record["refit_train_accuracy"] == accuracy(Xu @ root, y)
    assert abs(accuracy(Xtu, yt) - record["refit_test_accuracy"]) > 0.01
