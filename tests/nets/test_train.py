"""Training: losses fall, resume is exact, PyTorch's optimiser semantics, the measurement schedule."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dnc_jax.data import load_dataset, prepare
from dnc_jax.experiments import run_mlp
from dnc_jax.nets import TrainConfig, train_mlp
from dnc_jax.nets.measurements import EpochRecord


@pytest.mark.slow
def test_training_reduces_loss_and_measures(digits_400):
    d = digits_400
    config = TrainConfig(depth=2, width=32, epochs=6, lr=3e-3, batch_size=50, init_gain=1.0,
                         measure_every=3)
    model, history = train_mlp(d.X_train, d.y_train, d.X_test, d.y_test, config=config)
    assert history[-1].train_loss < 0.7 * history[0].train_loss
    measured = [h for h in history if h.layers is not None]
    assert [h.epoch for h in measured] == [3, 6]
    rec = measured[-1].layers[0]
    assert {"input", "right", "output", "nfa_sqrt_agop", "nfa_agop", "right_share"} <= set(
        rec.to_json())
    # the JSON form reads back as the same record
    assert EpochRecord.from_json(json.loads(json.dumps(measured[-1].to_json()))) == measured[-1]
    sgd = TrainConfig(depth=2, width=32, epochs=2, lr=1e-2, batch_size=50, optimizer="sgd",
                      weight_decay=1e-4, loss="cross_entropy", measure_every=5)
    assert len(train_mlp(d.X_train, d.y_train, config=sgd)[1]) == 2


@pytest.mark.slow
def test_mlp_resume_gives_same_parameters(tmp_path):
    config = TrainConfig(depth=2, width=16, epochs=6, lr=3e-3, batch_size=40, init_gain=1.0,
                         measure_every=2)
    kw = dict(dataset="digits", n=200, n_test=50, config=config, progress=False)
    full = run_mlp(str(tmp_path / "full"), **kw)
    run_mlp(str(tmp_path / "part"), stop_after=1, **kw)  # "killed" after epoch 2
    resumed = run_mlp(str(tmp_path / "part"), **kw)
    with np.load(tmp_path / "full" / "state-3.npz") as a, np.load(tmp_path / "part" / "state-3.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])
    assert [h.train_loss for h in resumed.history] == [h.train_loss for h in full.history]
    assert (tmp_path / "part" / "training.png").exists()


@pytest.mark.parametrize("change,match", [
    (lambda X, y: (X.at[3, 2].set(jnp.nan), y), "NaN"),
    (lambda X, y: (X, y.at[0].set(-1)), "0..C-1"),
    (lambda X, y: (X, y.astype(jnp.float32) + 0.5), "integer"),
    (lambda X, y: (X, y[:-1]), "rows"),
    (lambda X, y: (X[0], y), "2-D"),
    (lambda X, y: (X, y[:, None]), "1-D"),
])
def test_train_mlp_checks_inputs_first(change, match):
    """Bad data is one clear ValueError at the entry, never a failure inside an SVD."""
    X = jnp.asarray(np.random.default_rng(0).standard_normal((40, 6)), jnp.float32)
    y = jnp.arange(40) % 3
    bad_X, bad_y = change(X, y)
    with pytest.raises(ValueError, match=match):
        train_mlp(bad_X, bad_y, config=TrainConfig(depth=1, width=8, epochs=1, batch_size=8))
    with pytest.raises(ValueError, match="features"):
        train_mlp(X, y, X[:, :5], y, config=TrainConfig(depth=1, width=8, epochs=1, batch_size=8))


@pytest.mark.slow
def test_last_partial_batch_is_a_step_when_kept():
    """``last_batch="keep"``: 20 samples in batches of 16 make two SGD steps per epoch,
    the second on the 4 left over; an independent replay of those two steps matches."""
    from dnc_jax.data import one_hot_pm1
    from dnc_jax.nets.train import init_model

    rng = np.random.default_rng(1)
    X = jnp.asarray(rng.standard_normal((20, 5)), jnp.float32)
    y = np.arange(20) % 3
    config = TrainConfig(depth=1, width=6, epochs=1, batch_size=16, optimizer="sgd",
                         momentum=0.0, lr=0.05, last_batch="keep", seed=3)
    kept, _ = train_mlp(X, y, config=config)
    dropped, _ = train_mlp(X, y, config=TrainConfig(**{**config.__dict__, "last_batch": "drop"}))
    model = init_model(config, 5, 3)
    graphdef, params = nnx.split(model, nnx.Param)
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(jax.random.key(3), 1), 20))
    Y = jnp.asarray(one_hot_pm1(y, 3))

    def loss(p, idx):
        return jnp.mean((nnx.merge(graphdef, p)(X[idx]) - Y[idx]) ** 2)

    for idx in (perm[:16], perm[16:]):
        params = jax.tree.map(lambda p, g: p - 0.05 * g, params, jax.grad(loss)(params, idx))
        if len(idx) == 16:
            after_one = params
    for (W, _), (W_ref, _) in zip(kept.weights(), nnx.merge(graphdef, params).weights(),
                                  strict=True):
        np.testing.assert_allclose(W, W_ref, rtol=1e-5, atol=1e-6)
    for (W, _), (W_ref, _) in zip(dropped.weights(), nnx.merge(graphdef, after_one).weights(),
                                  strict=True):
        np.testing.assert_allclose(W, W_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("options", [{"optimizer": "sgd", "momentum": 0.9, "lr": 0.01},
                                     {"loss": "cross_entropy", "lr": 1e-3}])
def test_sgd_and_cross_entropy_training_lower_a_finite_loss(digits_400, options):
    X, y = digits_400.X_train, digits_400.y_train
    config = TrainConfig(depth=2, width=32, epochs=8, batch_size=32, measure_every=8,
                         init_gain=1.0, **options)
    _, history = train_mlp(X, y, config=config)
    losses = [h.train_loss for h in history]
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_optimizers_follow_pytorchs_weight_decay(name):
    """First step, by the PyTorch formulas: Adam adds ``wd w`` to the gradient before the
    step ``lr g/(|g|+eps)``; AdamW steps on ``g`` and decays ``lr wd w`` apart; SGD steps
    ``lr (g + wd w)``."""
    from dnc_jax.nets.train import make_optimizer

    lr, wd, eps = 0.1, 0.5, 1e-8
    w = jnp.asarray([1.0, -3.0, 2.5])
    g = jnp.asarray([0.3, 0.1, -0.2])
    tx = make_optimizer(TrainConfig(optimizer=name, lr=lr, weight_decay=wd, momentum=0.0))
    with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes dtypes
        update, _ = tx.update(g, tx.init(w), w)
    if name == "adam":
        gd = g + wd * w
        expect = -lr * gd / (jnp.abs(gd) + eps)
    elif name == "adamw":
        expect = -lr * (g / (jnp.abs(g) + eps) + wd * w)
    else:
        expect = -lr * (g + wd * w)
    # float32 bias correction (1 - 0.999 rounds by 1.3e-5) moves the Adam step by lr * 7e-6
    np.testing.assert_allclose(update, expect, rtol=1e-5, atol=1e-6)


def test_the_official_schedule_measures_after_epoch_one_and_every_m_after():
    """``schedule="official"``: the scripts' ``for i in range(epochs + 1)`` with
    ``i % m == 0``: epochs + 1 trained, measured after epochs 1, m + 1, ...; the default
    measures after every m-th epoch and the last."""
    from dnc_jax.nets.train import TrainConfig, train_epochs

    def measured(config):
        X, y = load_dataset("digits")
        data = prepare(X[:120], y[:120])
        return [r.record.epoch for r in train_epochs(data.X_train, data.y_train, config=config)
                if r.record.layers is not None]

    small = dict(depth=1, width=16, batch_size=40, optimizer="sgd", lr=0.01, measure_every=2)
    assert measured(TrainConfig(epochs=4, schedule="official", **small)) == [1, 3, 5]
    assert measured(TrainConfig(epochs=5, **small)) == [2, 4, 5]
    with pytest.raises(ValueError, match="schedule must be"):
        TrainConfig(schedule="paper").validate()
