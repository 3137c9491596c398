"""A row's prediction and features do not depend on which other rows share its batch:
bit for bit, alone, in a batch of 7, in a reordered batch or in the whole set (every row
goes through the same fixed-size block program; ``dnc_jax.blocks``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dnc_jax import data_mesh, fit_kernel_predictor
from dnc_jax.deep_rfm_model import DeepRFMConfig, deep_rfm_layers, host_rows
from dnc_jax.estimators import RFMClassifier, RFMRegressor
from dnc_jax.predictor import predict_block

N_TEST = 2 * predict_block() + 37  # three blocks, the last one padded


def _assert_batch_invariant(out, X, rng):
    """``out`` of row 5 alone, of rows 3..9 (a batch of 7), of a permutation and of
    slices of 7 equal the whole set's rows exactly."""
    full = np.asarray(out(X))
    np.testing.assert_array_equal(np.asarray(out(X[5:6]))[0], full[5])
    np.testing.assert_array_equal(np.asarray(out(X[3:10])), full[3:10])
    order = rng.permutation(len(X))
    np.testing.assert_array_equal(np.asarray(out(X[order])), full[order])
    # rows at other positions of their block than in the whole set
    tail = slice(len(X) - 7, len(X))
    np.testing.assert_array_equal(np.asarray(out(X[tail])), full[tail])


@pytest.mark.parametrize("kernel", ["laplace", "gaussian"])
@pytest.mark.parametrize("with_metric", [False, True])
def test_kernel_predictions_are_batch_invariant(rng, kernel, with_metric):
    X = rng.standard_normal((200, 12)).astype(np.float32)
    Y = rng.standard_normal((200, 3)).astype(np.float32)
    A = rng.standard_normal((12, 12)).astype(np.float32) / 4
    M = A @ A.T + np.eye(12, dtype=np.float32) if with_metric else None
    pred = fit_kernel_predictor(X, Y, kernel=kernel, bandwidth=3.0, reg=1e-3, M=M)
    T = rng.standard_normal((N_TEST, 12)).astype(np.float32)
    _assert_batch_invariant(pred.predict, T, rng)
    transform = np.linalg.qr(A)[0].astype(np.float32)
    _assert_batch_invariant(lambda Z: pred.predict(Z, transform=transform), T, rng)
    # x T inside the blocks is as accurate as x T taken first: both against float64
    with jax.enable_x64(True):
        pred64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), pred)
        ref = np.asarray(pred64.predict(np.float64(T) @ np.float64(transform)))
    inside = np.abs(np.asarray(pred.predict(T, transform=transform)) - ref).max()
    outside = np.abs(np.asarray(pred.predict(T @ transform)) - ref).max()
    assert inside <= 2 * outside + 1e-6 * np.abs(ref).max()


@pytest.mark.parametrize("sharded_centres", [False, True])
def test_sharded_predictions_do_not_depend_on_the_device(rng, sharded_centres):
    """On 4 devices a row's prediction is the same whichever device holds it: the ring
    adds the centre shards in a fixed order (``sharding.ring_sum``)."""
    from dnc_jax.sharding import Rows, as_rows

    mesh = data_mesh("all")
    X = rng.standard_normal((203, 10)).astype(np.float32)
    Y = rng.standard_normal((203, 2)).astype(np.float32)
    if sharded_centres:
        pred, _ = __import__("dnc_jax").fit_kernel_ridge(
            as_rows(X, mesh), as_rows(Y, mesh), bandwidth=2.0, reg=1e-3, solver="cg",
            tol=1e-6, mesh=mesh)
        assert pred.mesh is not None
    else:
        pred = fit_kernel_predictor(X, Y, bandwidth=2.0, reg=1e-3)
    T = rng.standard_normal((N_TEST, 10)).astype(np.float32)

    def out(Z):
        got = pred.predict(as_rows(Z, mesh))
        assert isinstance(got, Rows)
        return got.valid()

    _assert_batch_invariant(out, T, rng)


@pytest.mark.parametrize("Estimator", [RFMClassifier, RFMRegressor])
def test_estimator_outputs_are_batch_invariant(Estimator, rng):
    """What scikit-learn's subset and sample-order invariance checks ask, exactly."""
    X = rng.standard_normal((60, 5)).astype(np.float32)
    y = np.arange(60) % 3 if Estimator is RFMClassifier else X[:, 0] - 2 * X[:, 1]
    est = Estimator(iters=1).fit(X, y)
    out = est.decision_function if Estimator is RFMClassifier else est.predict
    Xtest = rng.standard_normal((N_TEST, 5)).astype(np.float32)
    _assert_batch_invariant(out, Xtest, rng)
    _assert_batch_invariant(est.predict, Xtest, rng)


@pytest.mark.parametrize("devices", [None, "all"])
def test_deep_rfm_features_are_batch_invariant(digits_small, devices):
    """Test rows that are copies of training rows get, after every layer, exactly the
    training rows' features, though they travel in a batch of 7 (on 1 or 4 devices)."""
    X, y = digits_small
    mesh = None if devices is None else data_mesh(devices)
    pick = np.array([0, 5, 17, 100, 255, 256, 299])
    config = DeepRFMConfig(depth=2, width=40)
    for _, state in deep_rfm_layers(X, y, X[pick], y[pick], config=config, mesh=mesh):
        np.testing.assert_array_equal(host_rows(state.X_test), host_rows(state.X_train)[pick])


@pytest.fixture(scope="module")
def digits_small():
    from dnc_jax.data import load_dataset, prepare

    X, y = load_dataset("digits")
    data = prepare(X[:300], y[:300])
    return jnp.asarray(data.X_train, jnp.float32), np.asarray(data.y_train)
