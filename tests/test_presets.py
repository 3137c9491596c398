"""The presets equal the cited scripts' values."""

import numpy as np
import pytest

from dnc_jax.deep_rfm_model import DeepRFMConfig
from dnc_jax.presets import deep_rfm_preset, mlp_preset


def test_official_preset_equals_the_cited_script_values():
    """Values read off dmbeaglehole/neural_collapse_rfm deep_rfm.py (eee0604) and
    aradha/recursive_feature_machines rfm/recursive_feature_machine.py (52c7801)."""
    p = deep_rfm_preset("official", "mnist5k")
    c = p.config
    assert (p.n, p.n_test) == (500, 100)  # -n default (l. 28); first 100 test (l. 239)
    # 242-251, 271-272; preprocess's X.std(dim=0) is torch's unbiased std (l. 106)
    assert p.prepare_options == {"sort_by_class": True, "test_statistics": "own", "ddof": 1}
    assert (c.depth, c.kernel, c.bandwidth, c.width) == (6, "laplace", 2.0, 512)  # l. 30-33
    assert c.reg == 1e-3  # reg=-1 ignored by fit; constructor default 1e-3
    assert (c.features, c.weights) == ("relu", "uniform")  # nn.Linear default init, l. 135-141
    assert c.refit_accuracy  # the accuracy printed after fit's refit
    rff = {d: deep_rfm_preset("official", d, "cosine").config for d in ("mnist5k", "cifar10",
                                                                          "svhn", "digits")}
    assert all(r.width is None and r.features == "cosine" for r in rff.values())  # RFF(D=dim)
    assert [rff[d].gamma for d in ("mnist5k", "cifar10", "svhn", "digits")] == [0.05, 0.1, 0.1, 0.5]
    default = deep_rfm_preset("default")
    assert default.config == DeepRFMConfig() and default.n is None and default.prepare_options == {}
    with pytest.raises(ValueError, match="preset"):
        deep_rfm_preset("figures")


def test_paper_presets_equal_the_figure_scripts_values():
    """gen_deep_rfm_plots.py lines 28-35 and gen_nn_plots.py lines 22-33 (eee0604): the
    settings the result files the paper's figures read are keyed to."""
    for dataset in ("mnist5k", "cifar10"):
        paper, official = deep_rfm_preset("paper", dataset), deep_rfm_preset("official", dataset)
        assert (paper.name, paper.script) == ("paper", "deep_rfm.py")
        assert (paper.config, paper.n, paper.n_test, paper.prepare_options) == (
            official.config, official.n, official.n_test, official.prepare_options)
    p = mlp_preset("paper")
    c = p.config
    assert (p.n, p.n_test, p.script) == (50_000, None, "nc_nn.py")  # -n 50000; all test rows
    assert (c.depth, c.epochs, c.lr, c.measure_every, c.width) == (5, 300, 0.05, 10, 512)
    assert (c.optimizer, c.momentum, c.weight_decay, c.init_gain) == ("sgd", 0.0, 0.0, 1.0)
    assert c.schedule == "official" and c.total_epochs == 301
    official = mlp_preset("official")
    assert p.prepare_options == official.prepare_options
    assert (c.loss, c.batch_size, c.bias, c.classifier_init, c.last_batch, c.input_init) == (
        "mse", 128, False, "torch", "keep", "xavier")
    assert mlp_preset("paper", "resnet18").config.input_init == "torch"


def test_official_mlp_preset_equals_the_cited_script_values():
    """Values read off dmbeaglehole/neural_collapse_rfm nc_nn.py (eee0604)."""
    p = mlp_preset("official")
    c = p.config
    assert (p.n, p.n_test) == (1000, 1000)  # -n 1000 (l. 22), first n of each split (184-185)
    # preprocess's X.std(dim=0) is torch's unbiased std (l. 122)
    assert p.prepare_options == {"sort_by_class": True, "test_statistics": "own", "ddof": 1}
    assert (c.depth, c.width, c.epochs, c.measure_every) == (3, 512, 1000, 25)  # l. 24-25, 31, 33
    assert (c.optimizer, c.lr, c.momentum, c.weight_decay) == ("sgd", 0.01, 0.0, 0.0)
    assert (c.loss, c.batch_size, c.last_batch) == ("mse", 128, "keep")  # l. 62, 241-242
    assert (c.init_gain, c.bias, c.classifier_init) == (1.0, False, "torch")  # l. 29, 591-611
    assert (c.init, c.input_init, c.backbone) == ("xavier_uniform", "xavier", "none")  # l. 600
    # for i in range(num_epochs + 1) ... if i % 25 == 0 (l. 455, 484): 1,001 epochs
    assert c.schedule == "official" and c.total_epochs == 1001
    resnet = mlp_preset("official", "resnet18").config  # -model resnet18 (l. 32, 617-650)
    assert (resnet.backbone, resnet.input_init) == ("resnet18", "torch")  # no init, l. 623-627
    assert mlp_preset("official", "vgg11").config.input_init == "torch"  # l. 657-661
    fast = mlp_preset("fast").config  # the README's measured quick run
    assert (fast.epochs, fast.lr, fast.optimizer, fast.bias, fast.init_gain) == (
        60, 1e-3, "adam", True, 0.1)
    with pytest.raises(ValueError, match="preset"):
        mlp_preset("nc_nn")


def test_ratio_mlp_preset_equals_the_cited_script_values():
    """Values read off dmbeaglehole/neural_collapse_rfm nc_nn_ratio.py (eee0604)."""
    p = mlp_preset("ratio")
    c = p.config
    assert (p.n, p.n_test) == (5000, 5000)  # -n 5000 (l. 24), first n of each split (115-116)
    # sorted by class (l. 125-134); ToTensor only, no preprocess (l. 78-83, 95-100)
    assert p.prepare_options == {"sort_by_class": True, "standardize_features": False,
                                 "input_scale": 1.0 / 255.0}
    assert (c.depth, c.width, c.epochs, c.measure_every) == (6, 512, 2000, 25)  # l. 26-27, 308, 386
    assert (c.optimizer, c.lr, c.weight_decay) == ("adamw", 1e-5, 0.01)  # l. 310, 322; torch default
    assert (c.loss, c.batch_size, c.last_batch) == ("mse", 512, "keep")  # l. 34, 165-166
    assert (c.init, c.init_gain, c.bias, c.classifier_init) == (
        "xavier_normal", 0.1, False, "torch")  # l. 388-401
    assert c.schedule == "official" and c.total_epochs == 2001  # l. 334, 351


def test_ratio_preset_inputs_and_first_loss_are_the_scripts():
    """nc_nn_ratio.py's pipeline written out independently: the first n images, ToTensor
    (8-bit pixels / 255), training sorted by class (a stable sort of the labels). Our
    prepared inputs equal it, so the first batch lies in [0, 1] (not 0-255); the
    network's loss at initialisation on the first batch equals a float64 forward pass of
    the same weights on the script's inputs."""
    import jax.numpy as jnp
    from flax import nnx

    from dnc_jax.data import load_dataset, prepare
    from dnc_jax.nets import MLP

    p = mlp_preset("ratio")
    X, y = load_dataset("mnist5k")
    assert X.max() == 255.0  # the embedded MNIST is raw 8-bit pixels
    data = prepare(X, y, n=600, **p.prepare_options)
    order = np.argsort(y[:600], kind="stable")
    script_X = (X[:600].astype(np.float64) / 255.0)[order]
    np.testing.assert_allclose(data.X_train, script_X, rtol=0, atol=1e-7)
    first = data.X_train[:p.config.batch_size]
    assert first.min() == 0.0 and first.max() == 1.0
    c = p.config
    model = MLP(784, 64, 10, c.depth, init_gain=c.init_gain, init=c.init, bias=c.bias,
                classifier_init=c.classifier_init, rngs=nnx.Rngs(0))
    h = script_X[:c.batch_size]
    layers = model.weights()
    for W, _ in layers[:-1]:
        h = np.maximum(h @ np.asarray(W, np.float64).T, 0.0)
    out = h @ np.asarray(layers[-1][0], np.float64).T
    script_loss = np.mean((out - data.Y_train[:c.batch_size]) ** 2)
    ours = float(jnp.mean((model(jnp.asarray(first)) - data.Y_train[:c.batch_size]) ** 2))
    assert abs(ours - script_loss) <= 1e-5 * script_loss
