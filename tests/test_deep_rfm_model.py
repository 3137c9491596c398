"""Deep RFM: the layers, the model, its configuration, float32 against float64 at depth, sharded runs."""

import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_row_sharded, without_time

from dnc_jax import (
    collapse_metrics,
    data_mesh,
    deep_rfm,
    fit_kernel_predictor,
    kernel_agop,
    matrix_power,
)
from dnc_jax.data import load_dataset, one_hot_pm1, prepare
from dnc_jax.deep_rfm_model import DeepRFMConfig, deep_rfm_layers, host_rows
from dnc_jax.layer_records import LayerRecord, Spectrum
from dnc_jax.rfm import fit_with_agop
from dnc_jax.sharding import Rows, as_rows


@pytest.mark.slow
def test_float32_tracks_float64_until_the_layers_where_it_parts():
    """On 500 embedded MNIST images at width 256, the float32 run's NC1 differs from the
    float64 run's by a rounding error that grows about 2.2-fold per layer from layer 10 on
    (``eps g^l``: 2e-4 at layer 10, 5e-3 at 14, 1e-2 at 15-16), then chaotically: at layers
    17-19 it ranges over 3-14% with the machine's thread count alone. Measured under every
    variation of ``benchmarks/tolerance_spread.py`` (instruction set capped at AVX2 or
    SSE4.2, XNNPACK off, Eigen on one thread, one core): through layer 13 at most 0.21%,
    through layer 16 at most 1.07%. The bounds keep about 5x margin over that worst case
    (TESTING.md); the chaotic layers are not compared, only that the run collapsed."""
    X, y = load_dataset("mnist5k", "train", 500)
    data = prepare(X, y)
    nc1 = {}
    with jax.enable_x64(True):
        for dtype in ("float32", "float64"):
            records = deep_rfm(data.X_train, data.y_train, depth=20, width=256, dtype=dtype)
            nc1[dtype] = np.array([[r.at(p).nc1 for p in ("input", "projected", "output")]
                                   for r in records])
    rel = np.abs(nc1["float32"] - nc1["float64"]) / nc1["float64"]
    assert nc1["float64"][-1, 2] < 1e-5 * nc1["float64"][0, 2]  # it did collapse
    assert nc1["float32"][-1, 2] < 1e-5 * nc1["float32"][0, 2]
    assert rel[:14].max() < 0.01
    assert rel[:17].max() < 0.05


def test_float64_layers_need_x64():
    """A float64 configuration is valid anywhere; running it with 64-bit JAX off is not."""
    X, y = np.ones((6, 3), np.float32), np.array([0, 1] * 3)
    with jax.enable_x64(False):
        config = DeepRFMConfig(dtype="float64", depth=1, width=4)
        with pytest.raises(ValueError, match="64-bit"):
            deep_rfm(X, y, config=config)
    with pytest.raises(ValueError, match="dtype"):
        DeepRFMConfig(dtype="float16").validate()


# ---------------------------------------------------------------- Deep RFM as a model


@pytest.mark.slow
@pytest.mark.parametrize("devices", [None, "all"])
def test_deep_rfm_model_reproduces_the_run(tmp_path, devices):
    """``DeepRFM.transform`` of the training rows gives each layer's recorded features bit
    for bit; ``predict`` gives each layer's recorded train and test accuracy; a saved and
    loaded model maps new data the same way."""
    from dnc_jax import data_mesh, deep_rfm, load_deep_rfm, save_deep_rfm
    from dnc_jax.data import load_dataset, prepare
    from dnc_jax.deep_rfm_model import DeepRFMConfig, deep_rfm_layers, host_rows

    X, y = load_dataset("digits")
    Xt, yt = load_dataset("digits", split="test")
    data = prepare(X[:250], y[:250], Xt[:150], yt[:150])
    mesh = None if devices is None else data_mesh(devices)
    config = DeepRFMConfig(depth=3, width=40)
    states = list(deep_rfm_layers(data.X_train, data.y_train, data.X_test, data.y_test,
                                  config=config, mesh=mesh))
    records, model = deep_rfm(data.X_train, data.y_train, data.X_test, data.y_test, depth=3,
                              width=40, mesh=mesh, return_model=True)
    assert model.depth == 3
    for l, (record, state) in enumerate(states):
        np.testing.assert_array_equal(host_rows(model.transform(data.X_train, l + 1, mesh=mesh)),
                                      host_rows(state.X_train))
        for split, Xs, ys in (("train", data.X_train, data.y_train),
                              ("test", data.X_test, data.y_test)):
            out = np.asarray(model.predict(Xs, l, mesh=mesh))
            assert float(np.mean(np.argmax(out, axis=1) == ys)) == getattr(record, f"{split}_accuracy")
        assert records[l].test_accuracy == record.test_accuracy
    path = str(tmp_path / "model.npz")
    save_deep_rfm(model, path)
    loaded = load_deep_rfm(path)
    # on 4 devices the fit is CG with sharded centres (a ring of partial sums); the loaded
    # model holds them whole: equal up to float32 summation order
    want = np.asarray(model.predict(data.X_test, mesh=mesh))
    np.testing.assert_allclose(np.asarray(loaded.predict(data.X_test, mesh=mesh)), want,
                               rtol=0, atol=1e-5 * np.abs(want).max())
    # the default layer is the last; negative layers count from the end, down to -depth
    for default, explicit in ((model.predict(data.X_test, mesh=mesh), 2),
                              (model.predict(data.X_test, -3, mesh=mesh), 0)):
        np.testing.assert_array_equal(np.asarray(default),
                                      np.asarray(model.predict(data.X_test, explicit, mesh=mesh)))
    with pytest.raises(ValueError, match="layer must be in 0..3"):
        model.transform(data.X_train, 4)
    with pytest.raises(ValueError, match="layer must be in -3..2"):
        model.predict(data.X_train, 3)
    with pytest.raises(ValueError, match="layer must be in -3..2"):
        model.predict(data.X_train, -4)
    with pytest.raises(dataclasses.FrozenInstanceError):  # the model and its layers are values
        model.layers[0].features = "tanh"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.layers = ()  # type: ignore[misc]
    _, one = deep_rfm(data.X_train, data.y_train, depth=1, width=40, mesh=mesh,
                      return_model=True)
    assert one.predict(data.X_test, mesh=mesh).shape == (len(data.X_test), 10)
    with pytest.raises(ValueError, match="features; the model takes"):
        model.transform(data.X_train[:, :5])


@pytest.mark.slow
def test_a_run_saves_its_model_and_resumes_it(tmp_path):
    """``run_deep_rfm(save_model=True)`` (``--save-model``) writes each layer as it is
    committed; an interrupted and resumed run's folder loads as the model that
    ``deep_rfm`` returns, and it reproduces the run's recorded test accuracies."""
    from dnc_jax import deep_rfm, load_deep_rfm
    from dnc_jax.data import load_dataset, prepare
    from dnc_jax.deep_rfm_model import DeepRFMConfig
    from dnc_jax.experiments import run_deep_rfm

    config = DeepRFMConfig(depth=3, width=40)
    out = str(tmp_path / "run")
    options = dict(dataset="digits", n=250, n_test=150, config=config, progress=False,
                   save_model=True)
    run_deep_rfm(out, stop_after=2, **options)
    assert len(load_deep_rfm(out).layers) == 2
    results = run_deep_rfm(out, **options)
    loaded = load_deep_rfm(out)
    assert loaded.depth == 3
    X, y = load_dataset("digits")
    Xt, yt = load_dataset("digits", split="test")
    data = prepare(X[:250], y[:250], Xt[:150], yt[:150])
    _, model = deep_rfm(data.X_train, data.y_train, depth=3, width=40, return_model=True)
    for l, record in enumerate(results.layers):
        out_l = np.asarray(loaded.predict(data.X_test, l, raw=False))
        raw_l = np.asarray(loaded.predict(Xt[:150], l, raw=True))  # the run's preparation
        np.testing.assert_array_equal(raw_l, out_l)
        assert float(np.mean(np.argmax(out_l, axis=1) == data.y_test)) == record.test_accuracy
        np.testing.assert_array_equal(loaded.layers[l].root, model.layers[l].root)
    with pytest.raises(ValueError, match="no saved model"):
        load_deep_rfm(str(tmp_path))


@pytest.mark.slow
def test_a_custom_feature_map_is_a_function(tmp_path):
    """ReLU written as a function gives the built-in ReLU run bit for bit; ``tanh`` builds
    a model that transforms new data, saves, and loads given the function again."""
    from dnc_jax import deep_rfm, load_deep_rfm, save_deep_rfm
    from dnc_jax.data import load_dataset, prepare
    from dnc_jax.deep_rfm_model import DeepRFMConfig
    from dnc_jax.experiments import run_deep_rfm

    X, y = load_dataset("digits")
    data = prepare(X[:200], y[:200])

    def relu_by_hand(pre):
        return jnp.maximum(pre, 0.0)

    builtin = deep_rfm(data.X_train, data.y_train, depth=2, width=30)
    custom = deep_rfm(data.X_train, data.y_train, depth=2, width=30, features=relu_by_hand)
    for a, b in zip(builtin, custom, strict=True):
        assert a.output == b.output and a.train_accuracy == b.train_accuracy
    _, model = deep_rfm(data.X_train, data.y_train, depth=2, width=30, features=jnp.tanh,
                        return_model=True)
    H = np.asarray(model.transform(data.X_train))
    assert H.shape == (200, 30) and np.abs(H).max() < 1 and (H < 0).any()  # tanh, not relu
    path = str(tmp_path / "tanh.npz")
    save_deep_rfm(model, path)
    for features in (None, "tanh"):  # the function itself, not a name, is needed
        with pytest.raises(ValueError, match="custom feature map"):
            load_deep_rfm(path, features=features)
    np.testing.assert_array_equal(load_deep_rfm(path, features=jnp.tanh).transform(data.X_train),
                                  H)
    with pytest.raises(ValueError, match="must be a name"):
        run_deep_rfm(str(tmp_path / "run"), dataset="digits", n=100, progress=False,
                     config=DeepRFMConfig(depth=1, features=jnp.tanh))
    with pytest.raises(ValueError, match="or a function"):
        DeepRFMConfig(features="tanh").validate()


@pytest.mark.slow
def test_sharded_deep_rfm_layer_equals_one_device(digits_rows):
    X, y, _ = digits_rows
    config = DeepRFMConfig(depth=1, width=64, solver="cg", precond_rank=100, tol=1e-7)
    Xt = X[:30]
    one = next(deep_rfm_layers(X, y, Xt, y[:30], config=config))
    mesh = data_mesh("all")
    four = next(deep_rfm_layers(X, y, Xt, y[:30], config=config, mesh=mesh))
    (r1, s1), (r4, s4) = one, four
    assert_row_sharded(s4.X_train.data, mesh)
    np.testing.assert_allclose(s4.X_train.valid(), s1.X_train.valid(), rtol=1e-4, atol=1e-5)
    for point in ("input", "projected", "output"):
        for field in ("nc1", "nc2", "cdnv"):
            assert getattr(r4.at(point), field) == pytest.approx(getattr(r1.at(point), field),
                                                                 rel=1e-5, abs=1e-7)
    assert r4.train_accuracy == r1.train_accuracy
    assert r4.test_accuracy == r1.test_accuracy
    assert r4.solve.solver == "cg" and r4.solve.iterations >= 1


@pytest.mark.slow
def test_unlabelled_test_data_is_normalised_and_mapped(digits_rows):
    """X_test without y_test follows the same layers as with it (a bug once: the test rows
    took another path)."""
    X, y, _ = digits_rows
    config = DeepRFMConfig(depth=2, width=32)
    with_labels = list(deep_rfm_layers(X[:300], y[:300], X[300:], y[300:], config=config))
    without = list(deep_rfm_layers(X[:300], y[:300], X[300:] * 7.0, config=config))
    np.testing.assert_allclose(without[-1][1].X_test.valid(), with_labels[-1][1].X_test.valid(),
                               rtol=1e-5, atol=1e-6)
    assert without[0][0].test_accuracy is None
    refit = DeepRFMConfig(depth=1, width=32, refit_accuracy=True)
    record = next(deep_rfm_layers(X[:300], y[:300], X[300:], config=refit))[0]
    assert record.refit_test_accuracy is None and 0.9 < record.refit_train_accuracy <= 1.0
    for bad in ((np.where(np.eye(300, 64, dtype=bool), np.nan, X[:300]), X[300:]),
                (X[:300], np.where(np.eye(102, 64, dtype=bool), np.inf, X[300:]))):
        with pytest.raises(ValueError, match="NaN or infinite"):
            next(deep_rfm_layers(*bad[:1], y[:300], bad[1], config=config))


@pytest.mark.slow
def test_deep_rfm_is_deterministic_and_collapses(digits):
    kw = dict(depth=5, width=256, seed=3)
    a = deep_rfm(digits.X_train, digits.y_train, digits.X_test, digits.y_test, **kw)
    b = deep_rfm(digits.X_train, digits.y_train, digits.X_test, digits.y_test, **kw)
    assert [without_time(r) for r in a] == [without_time(r) for r in b]
    first, last = a[0].input.nc1, a[-1].output.nc1
    assert last * 10 <= first, (first, last)
    assert all(r.test_accuracy > 0.8 for r in a)
    # the JSON form is plain JSON and reads back as the same record
    assert [LayerRecord.from_json(json.loads(json.dumps(r.to_json()))) for r in a] == a


@pytest.mark.slow
def test_deep_rfm_options(digits):
    X, y = digits.X_train[:300], digits.y_train[:300]
    cos = deep_rfm(X, y, depth=2, width=128, features="cosine", gamma=0.5)
    gauss = deep_rfm(X, y, depth=2, width=128, weights="gaussian", kernel="gaussian")
    assert cos[0].test_accuracy is None and len(gauss) == 2
    with pytest.raises(ValueError, match="depth"):
        deep_rfm(X, y, depth=0)
    with pytest.raises(ValueError, match="rows"):
        deep_rfm(X, y[:-1], depth=1)


@pytest.mark.slow
@pytest.mark.parametrize("features,weights", [("relu", "uniform"), ("relu", "gaussian"),
                                              ("cosine", "uniform")])
def test_deep_rfm_layer_rebuilt_by_hand(digits, features, weights):
    """One Deep RFM layer from the public pieces (unit rows, a Laplace fit, the AGOP divided
    by its largest entry, its square root, the seeded random map by its formula: uniform
    or Gaussian ReLU weights of scale 1/sqrt(d), or ``sqrt(2/D) cos(u W^T + b)`` with
    Cauchy ``W`` of scale gamma and ``b ~ U(0, 2 pi)``) equals the layer's record; another
    seed changes the map and the output."""
    from dnc_jax import matrix_power

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
        got = record.at(point)
        assert got.nc1 == pytest.approx(ref["nc1"], rel=1e-4), point
        assert got.nc2 == pytest.approx(ref["nc2"], rel=1e-3), point
        # the ratios above cannot see a feature scale (sqrt(2/D), 1/sqrt(d)); traces can
        assert got.trace_within == pytest.approx(ref["trace_within"], rel=1e-4)
    assert record.train_accuracy == float(np.mean(np.argmax(np.asarray(pred.predict(Xu)), 1) == y))
    (other,) = deep_rfm(X, y, seed=6, **options)
    assert other.projected.nc1 == pytest.approx(record.projected.nc1, rel=1e-6)
    assert abs(other.output.nc1 - record.output.nc1) > 1e-3 * record.output.nc1


def test_accuracy_counts_only_the_real_rows():
    """A layer's accuracy is over the ``n`` real rows: a padding row whose prediction
    matches its (padding) label does not count."""
    from dnc_jax.deep_rfm_model import _accuracy
    from dnc_jax.sharding import Rows

    pred = Rows(jnp.eye(3)[jnp.asarray([0, 1, 2, 0])], 3)
    labels = Rows(jnp.asarray([0, 1, 0, 0], jnp.int32), 3)
    assert _accuracy(pred, labels) == 2 / 3


def test_random_weights_follow_their_laws():
    """ReLU layers draw ``W`` uniform on ``[-1/sqrt(d), 1/sqrt(d)]`` (as the module docstring
    says) or Gaussian with that standard deviation, phases 0; cosine layers draw
    Cauchy weights times ``gamma`` and phases uniform on ``[0, 2 pi)``. 32,000 draws put the
    extremes of the uniform law within 0.1% of its ends and the sample deviations within
    2% of the law's (the standard error of a standard deviation is 0.4% here)."""
    from dnc_jax.deep_rfm_model import DeepRFMConfig, random_weights

    d, width = 16, 2000
    bound = 1 / np.sqrt(d)
    key = jax.random.key(0)
    W, b = (np.asarray(a) for a in random_weights(key, d, DeepRFMConfig(width=width)))
    assert W.shape == (width, d) and np.all(np.abs(W) <= bound) and np.all(b == 0)
    assert W.min() < -0.999 * bound and W.max() > 0.999 * bound
    assert abs(W.std() - bound / np.sqrt(3)) < 0.02 * bound / np.sqrt(3)
    W, _ = (np.asarray(a) for a in random_weights(key, d, DeepRFMConfig(width=width,
                                                                         weights="gaussian")))
    assert abs(W.std() - bound) < 0.02 * bound and abs(W.mean()) < 0.03 * bound
    W, b = (np.asarray(a) for a in random_weights(key, d, DeepRFMConfig(
        width=width, features="cosine", gamma=2.0)))
    assert abs(np.median(np.abs(W)) - 2.0) < 0.05 * 2.0  # |Cauchy(0, gamma)|: median gamma
    assert b.min() >= 0 and b.max() < 2 * np.pi and b.max() > 0.99 * 2 * np.pi


def test_deep_rfm_config_boundaries():
    """Each check's boundary value passes and the value past it raises; the config is
    frozen (hashable, safe as a default argument)."""

    from dnc_jax.deep_rfm_model import DeepRFMConfig

    for ok in (dict(agop_samples=1), dict(width=1), dict(width=None), dict(reg=0.0),
               dict(bandwidth=0.5), dict(depth=1), dict(gamma=0.0),  # gamma: cosine only
               dict(features="cosine", gamma=1e-3), dict(kernel="matern32")):
        DeepRFMConfig(**ok).validate()
    for bad in (dict(agop_samples=0), dict(width=0), dict(reg=-1e-9), dict(bandwidth=0.0),
                dict(depth=0), dict(features="cosine", gamma=0.0), dict(features="tanh"),
                dict(weights="normal"), dict(dtype="float16"), dict(solver="lu"),
                dict(kernel="nope"), dict(agop_batch=0)):
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


def test_spectrum_of_eigenvalues():
    evals = np.arange(13.0)[::-1][np.random.default_rng(0).permutation(13)]
    out = Spectrum.of(evals)
    assert out.top_eigenvalues == tuple(np.arange(12.0, 2.0, -1.0))  # ten, descending
    assert out.spectrum == tuple(np.arange(12.0, -1.0, -1.0))
    assert out.effective_rank == pytest.approx(78.0**2 / np.sum(np.arange(13.0) ** 2), rel=1e-12)
    assert Spectrum.of(np.array([0.0, 4.0]), top=1).to_json() == {
        "top_eigenvalues": [4.0], "effective_rank": 1.0, "spectrum": [4.0, 0.0]}
    assert Spectrum.of(np.zeros(3)).effective_rank == 0.0
    assert Spectrum.of(np.array([0.25, 0.25])).effective_rank == 2.0  # trace below 1


@pytest.mark.slow
def test_deep_rfm_layer_states_phases_and_sampled_agop_seeds(digits):
    """States count the layers done; the phase seconds are non-negative and add up to at
    most the layer's seconds, which fit in the wall time; layer ``l`` samples its AGOP rows
    with ``seed + l`` (rebuilt by hand for layer 1; ``seed - 1`` would differ)."""

    from dnc_jax.deep_rfm_model import DeepRFMConfig, _unit_rows, deep_rfm_layers
    from dnc_jax.gradient_outer_product import psd_eigh

    X, y = digits.X_train[:200], digits.y_train[:200]
    config = DeepRFMConfig(depth=2, width=48, agop_samples=60, seed=5)
    steps, start = [], time.perf_counter()
    for record, state in deep_rfm_layers(X, y, config=config):
        steps.append((record, state, time.perf_counter() - start))
        start = time.perf_counter()
    assert [s.layer for _, s, _ in steps] == [1, 2]
    for record, _, wall in steps:
        phases = record.phase_seconds
        assert min(phases) >= 0 and sum(phases) <= record.seconds <= wall
    X1 = np.asarray(_unit_rows(jnp.asarray(np.asarray(steps[0][1].X_train.valid()))))

    def top(seed):
        _, M, _ = fit_with_agop(X1, one_hot_pm1(y, 10), bandwidth=2.0, reg=1e-3,
                                batch_size=1024, normalize="max", agop_samples=60, seed=seed)
        return np.array(Spectrum.of(psd_eigh(M)[0]).top_eigenvalues)

    got = np.array(steps[1][0].agop.top_eigenvalues)
    np.testing.assert_allclose(got, top(6), rtol=1e-4)
    assert not np.allclose(got, top(4), rtol=1e-2)


@pytest.mark.slow
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

    assert record.refit_test_accuracy == accuracy(Xtu @ root, yt)
    assert record.refit_train_accuracy == accuracy(Xu @ root, y)
    assert abs(accuracy(Xtu, yt) - record.refit_test_accuracy) > 0.01


@pytest.mark.slow
@pytest.mark.parametrize("devices", [None, "all"])
def test_deep_rfm_features_are_batch_invariant(digits_300, devices):
    """Test rows that are copies of training rows get, after every layer, exactly the
    training rows' features, though they travel in a batch of 7 (on 1 or 4 devices)."""
    X, y = digits_300
    mesh = None if devices is None else data_mesh(devices)
    pick = np.array([0, 5, 17, 100, 255, 256, 299])
    config = DeepRFMConfig(depth=2, width=40)
    for _, state in deep_rfm_layers(X, y, X[pick], y[pick], config=config, mesh=mesh):
        np.testing.assert_array_equal(host_rows(state.X_test), host_rows(state.X_train)[pick])


def test_test_labels_past_the_training_classes_are_refused_before_any_fit():
    """``y_test`` may hold every training class and no other: the largest training label
    passes the check (the boundary), one past it raises before the first layer's fit."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((12, 4)).astype(np.float32), np.arange(12) % 3
    layers = deep_rfm_layers(X, y, X[:3], np.array([0, 1, 2]), config=DeepRFMConfig(depth=1, width=4))
    assert next(layers)[0].layer == 0
    with pytest.raises(ValueError, match="y_test holds label 3 but there are 3 classes"):
        next(deep_rfm_layers(X, y, X[:3], np.array([0, 1, 3]), config=DeepRFMConfig(depth=1)))
