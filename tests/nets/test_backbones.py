"""ResNet-18 / VGG-11 backbones with the MLP head."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dnc_jax.experiments import run_mlp
from dnc_jax.nets.backbones import VGG11, ResNet18, adaptive_avg_pool
from dnc_jax.nets.network import Network
from dnc_jax.nets.train import TrainConfig


def _params(module) -> int:
    return sum(int(v.size) for v in jax.tree.leaves(nnx.state(module, nnx.Param)))


@pytest.mark.slow
@pytest.mark.parametrize("channels,side", [(1, 28), (3, 32)])
def test_backbone_shapes_and_torchvision_parameter_counts(channels, side):
    """Output widths 512 and 8192; parameter counts equal torchvision's: resnet18 has
    11,689,512 with its 1000-way fc (513,000) and 3-channel conv1 (9,408); vgg11's first
    15 feature modules have 4,499,648 with a bias-free 1-channel first conv (the script's
    replacement; 3-channel: +1,152)."""
    x = jnp.ones((2, side, side, channels))
    resnet, vgg = ResNet18(channels, rngs=nnx.Rngs(0)), VGG11(channels, rngs=nnx.Rngs(0))
    assert resnet(x).shape == (2, 512)
    assert vgg(x).shape == (2, 8192)
    assert _params(resnet) == 11_689_512 - 513_000 - 9_408 + 64 * channels * 49
    assert _params(vgg) == 4_499_648 + 64 * 9 * (channels - 1)


def test_adaptive_avg_pool_is_pytorchs():
    """Bins ``[floor(i L/s), ceil((i+1) L/s))``: 8 -> 4 is 2x2 averaging, 4 -> 4 the
    identity, 3 -> 4 (MNIST's 3x3 maps in VGG-11) repeats the middle row in two bins."""
    x = jnp.arange(2 * 8 * 8 * 3, dtype=jnp.float32).reshape(2, 8, 8, 3)
    expect = x.reshape(2, 4, 2, 4, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(adaptive_avg_pool(x, (4, 4)), expect, rtol=1e-6)
    np.testing.assert_array_equal(adaptive_avg_pool(expect, (4, 4)), expect)
    r = jnp.asarray([0.0, 1.0, 4.0])[None, :, None, None] * jnp.ones((1, 3, 3, 1))
    out = adaptive_avg_pool(r, (4, 4))[0, :, 0, 0]
    np.testing.assert_allclose(out, [0.0, 0.5, 2.5, 4.0])


def test_network_checks_the_image_shape():
    with pytest.raises(ValueError, match="image_shape"):
        Network(784, 10, backbone="vgg11", rngs=nnx.Rngs(0), width=8, depth=1)
    with pytest.raises(ValueError, match="784"):
        Network(784, 10, backbone="vgg11", image_shape=(32, 32, 3), rngs=nnx.Rngs(0), width=8,
                depth=1)
    with pytest.raises(ValueError, match="backbone"):
        TrainConfig(backbone="resnet50").validate()


@pytest.mark.slow
def test_resnet_run_lowers_the_loss_and_resumes_identically(tmp_path):
    """A ResNet-18 + head run on 40 MNIST images (every class present): the loss falls, the
    head is bias-free, every batch norm carries running statistics, and a run stopped after its first
    measurement and resumed ends with bit-identical parameters, statistics and optimiser
    state."""
    config = TrainConfig(backbone="resnet18", depth=2, width=16, epochs=2, lr=1e-3,
                         batch_size=16, measure_every=1, init_gain=1.0)
    kw = dict(dataset="mnist5k", n=40, n_test=16, config=config, progress=False)
    full = run_mlp(str(tmp_path / "full"), **kw)
    run_mlp(str(tmp_path / "part"), stop_after=1, **kw)
    resumed = run_mlp(str(tmp_path / "part"), **kw)
    losses = [h.train_loss for h in full.history]
    assert losses[-1] < losses[0], losses
    assert [h.train_loss for h in resumed.history] == losses
    with np.load(tmp_path / "full" / "state-2.npz") as a, \
            np.load(tmp_path / "part" / "state-2.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])
    layers = full.measurements[-1].layers
    assert len(layers) == 2 and layers[0].input.num_samples == 40
    assert {"input", "right", "agop", "output", "agop_share"} <= set(layers[0].to_json())
    from dnc_jax.nets.train import init_model

    model = init_model(config, 784, 10, (28, 28, 1))
    assert all(b is None for _, b in model.weights())
    stats = nnx.state(model, nnx.BatchStat)
    assert len(jax.tree.leaves(stats)) == 2 * (1 + 8 * 2 + 3)  # mean, var per batch norm


@pytest.mark.slow
def test_vgg_training_steps_lower_the_loss():
    """Three epochs of full-batch Adam on 40 MNIST images (every class present) through
    VGG-11 and the head."""
    from dnc_jax.data import load_dataset, prepare
    from dnc_jax.nets.train import train_mlp

    X, y = load_dataset("mnist5k", "train", 40)
    data = prepare(X, y)
    config = TrainConfig(backbone="vgg11", depth=1, width=16, epochs=3, lr=1e-3,
                         batch_size=40, measure_every=3, init_gain=1.0)
    model, history = train_mlp(data.X_train, data.y_train, config=config,
                               image_shape=(28, 28, 1))
    losses = [h.train_loss for h in history]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
    assert model.backbone is not None and len(model.weights()) == 2
