"""Deep RFM as the paper ran it: the official preset, seeds, figures."""

import json

import numpy as np
import pytest
from helpers import assert_valid_results, without_time

from dnc_jax.cli import main
from dnc_jax.deep_rfm_model import DeepRFMConfig
from dnc_jax.experiments import aggregate_layers, run_deep_rfm, run_deep_rfm_seeds
from dnc_jax.figures import deep_rfm_figures
from dnc_jax.presets import deep_rfm_preset, mlp_preset


def test_official_preset_equals_the_cited_script_values():
    """Values read off dmbeaglehole/neural_collapse_rfm deep_rfm.py (eee0604) and
    aradha/recursive_feature_machines rfm/recursive_feature_machine.py (52c7801)."""
    p = deep_rfm_preset("official", "mnist5k")
    c = p.config
    assert (p.n, p.n_test) == (500, 100)  # -n default (l. 28); first 100 test (l. 239)
    assert p.prepare_options == {"sort_by_class": True, "test_statistics": "own"}  # 242-251, 271-272
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
        deep_rfm_preset("paper")


def test_cli_official_preset_with_override(tmp_path, capsys):
    out = tmp_path / "off"
    assert main(["deep-rfm", "--preset", "official", "--dataset", "digits", "--depth", "2",
                 "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    config = results["config"]
    assert (config["n"], config["n_test"], config["depth"]) == (500, 100, 2)  # depth overridden
    assert config["prepare"] == {"sort_by_class": True, "test_statistics": "own"}
    assert config["refit_accuracy"] and config["width"] == 512 and config["bandwidth"] == 2.0
    for layer in results["layers"]:
        assert 0.5 < layer["refit_test_accuracy"] <= 1.0 and layer["refit_train_accuracy"] == 1.0
    assert "refit test" in capsys.readouterr().out
    # the cosine variant takes the layer's input dimension as its width
    out = tmp_path / "rff"
    assert main(["deep-rfm", "--preset", "official", "--features", "cosine", "--dataset",
                 "digits", "--depth", "2", "--out", str(out), "--no-progress"]) == 0
    layers = json.loads((out / "results.json").read_text())["layers"]
    assert [layer["input_dim"] for layer in layers] == [64, 64]


def test_aggregate_layers_mean_and_std():
    def rec(v):
        point = {"nc1": v, "nc2": 2 * v, "cdnv": 3 * v}
        return {"input": point, "projected": point, "output": point, "train_accuracy": 1.0,
                "test_accuracy": v / 10}

    runs = [[rec(1.0), rec(2.0)], [rec(3.0), rec(5.0)], [rec(2.0)]]
    summary = aggregate_layers(runs)
    assert len(summary) == 1  # only layers every run completed
    # seed bands use n - 1, as torch.std in the official plots
    assert summary[0]["projected"]["nc2"] == {"mean": 4.0,
                                              "std": pytest.approx(np.std([2, 6, 4], ddof=1))}
    assert summary[0]["test_accuracy"]["mean"] == pytest.approx(0.2)
    two = aggregate_layers(runs[:2])
    assert two[1]["output"]["nc1"]["mean"] == 3.5
    assert two[1]["output"]["nc1"]["std"] == pytest.approx(1.5 * np.sqrt(2))
    assert aggregate_layers(runs[2:])[0]["output"]["nc1"]["std"] == 0.0  # one seed


def test_seeds_run_aggregates_resumes_and_draws(tmp_path):
    config = DeepRFMConfig(depth=2, width=32)
    kw = dict(dataset="digits", n=200, n_test=50, progress=False)
    out = str(tmp_path / "seeds")
    summary = run_deep_rfm_seeds(out, (0, 3), config=config, **kw)
    runs = [json.loads((tmp_path / "seeds" / f"seed-{s}" / "results.json").read_text())
            for s in (0, 3)]
    assert [r["config"]["seed"] for r in runs] == [0, 3]
    values = [r["layers"][1]["output"]["nc1"] for r in runs]
    assert values[0] != values[1]  # the seed changes the random maps
    assert summary[1]["output"]["nc1"]["mean"] == pytest.approx(np.mean(values))
    assert summary[1]["output"]["nc1"]["std"] == pytest.approx(np.std(values, ddof=1))
    saved = json.loads((tmp_path / "seeds" / "summary.json").read_text())
    assert saved["seeds"] == [0, 3] and saved["layers"] == summary
    # a single seed's run equals the same seed run alone
    alone = run_deep_rfm(str(tmp_path / "alone"), config=DeepRFMConfig(depth=2, width=32, seed=3),
                         **kw)
    assert [without_time(r) for r in alone["layers"]] == [without_time(r) for r in runs[1]["layers"]]
    # rerunning resumes: nothing is recomputed (the records, times included, are unchanged)
    before = [(tmp_path / "seeds" / f"seed-{s}" / "results.json").read_bytes() for s in (0, 3)]
    again = run_deep_rfm_seeds(out, (0, 3), config=config, **kw)
    assert again == summary
    assert [(tmp_path / "seeds" / f"seed-{s}" / "results.json").read_bytes()
            for s in (0, 3)] == before
    paths = deep_rfm_figures(out, "svg")
    assert sorted(p.rsplit("/", 1)[-1] for p in paths) == ["agop_spectra.svg", "collapse.svg",
                                                           "grams.svg"]
    with np.load(tmp_path / "seeds" / "seed-0" / "extras.npz") as extras:
        grams, labels = extras["grams"], extras["gram_labels"]
    assert grams.shape[0] == 2 and np.all(np.diff(labels) >= 0)  # class-sorted rows
    np.testing.assert_allclose(np.diagonal(grams, axis1=1, axis2=2), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="distinct"):
        run_deep_rfm_seeds(out, (1, 1), config=config, **kw)


def test_cli_seeds_and_figures(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["deep-rfm", "--dataset", "digits", "--n", "150", "--depth", "2", "--width",
                 "16", "--seeds", "0", "1", "--out", str(out), "--no-progress"]) == 0
    assert "+-" in capsys.readouterr().out
    assert (out / "figures" / "collapse.png").stat().st_size > 1000
    assert main(["figures", "deep-rfm", "--run", str(out), "--format", "pdf"]) == 0
    assert (out / "figures" / "grams.pdf").read_bytes()[:4] == b"%PDF"
    assert main(["figures", "deep-rfm", "--run", str(tmp_path / "empty")]) == 2
    assert "no Deep RFM run" in capsys.readouterr().err


def test_official_mlp_preset_equals_the_cited_script_values():
    """Values read off dmbeaglehole/neural_collapse_rfm nc_nn.py (eee0604)."""
    p = mlp_preset("official")
    c = p.config
    assert (p.n, p.n_test) == (1000, 1000)  # -n 1000 (l. 22), first n of each split (184-185)
    assert p.prepare_options == {"sort_by_class": True, "test_statistics": "own"}
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


def test_cli_mlp_official_preset(tmp_path):
    out = tmp_path / "mlp"
    assert main(["mlp", "--preset", "official", "--dataset", "digits", "--n", "200",
                 "--n-test", "60", "--epochs", "2", "--measure-every", "2", "--depth", "2",
                 "--out", str(out), "--no-progress"]) == 0
    config = assert_valid_results(out / "results.json")["config"]
    assert (config["n"], config["n_test"], config["epochs"], config["depth"]) == (200, 60, 2, 2)
    assert (config["optimizer"], config["lr"], config["classifier_init"], config["bias"],
            config["last_batch"]) == ("sgd", 0.01, "torch", False, "keep")
    assert config["prepare"] == {"sort_by_class": True, "test_statistics": "own"}


def _measurement(epoch, nc1_in, nfa, loss):
    point = {"nc1": nc1_in, "trace_within": 1.0, "trace_between": 3.0, "trace_total": 4.0,
             "num_classes": 10}
    deeper = {**point, "trace_within": 2.0}  # the traces are read at the input, not here
    layer = {"input": point, "right": deeper, "agop": deeper, "output": deeper}
    layer.update(nfa_sqrt_agop=nfa, nfa_agop=nfa / 2)
    return {"epoch": epoch, "train_loss": loss, "train_accuracy": 1.0, "test_accuracy": None,
            "layers": [layer]}


def test_mlp_seeds_aggregate_mean_and_std():
    from dnc_jax.experiments.mlp_seeds import aggregate_losses, aggregate_measurements

    runs = [[_measurement(5, 2.0, 0.6, 0.3), _measurement(10, 1.0, 0.7, 0.1)],
            [_measurement(5, 4.0, 0.8, 0.5)]]  # the second run has one measurement so far
    (entry,) = aggregate_measurements(runs)
    assert entry["epoch"] == 5 and entry["seeds"] == 2
    root2 = pytest.approx(np.sqrt(2))  # the n - 1 std of two values 2 apart
    assert entry["layers"][0]["nc1_input"] == {"mean": 3.0, "std": root2}
    assert entry["layers"][0]["nfa_sqrt_agop"]["mean"] == pytest.approx(0.7)
    assert entry["layers"][0]["within_total"] == {"mean": 0.25, "std": 0.0}
    # the script's convention: C tr(S_B) / tr(S_T)
    assert entry["layers"][0]["between_total_official"] == {"mean": 7.5, "std": 0.0}
    assert entry["train_loss"] == {"mean": pytest.approx(0.4),
                                   "std": pytest.approx(0.1 * np.sqrt(2))}
    assert entry["test_accuracy"] is None
    with pytest.raises(ValueError, match="different epochs"):
        aggregate_measurements([[_measurement(5, 1.0, 0.5, 0.1)], [_measurement(6, 1.0, 0.5, 0.1)]])
    losses = aggregate_losses([[{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.5}],
                               [{"epoch": 1, "train_loss": 3.0}]])
    assert losses == [{"epoch": 1, "train_loss": {"mean": 2.0, "std": root2}}]


def test_cli_mlp_seeds(tmp_path):
    out = tmp_path / "seeds"
    assert main(["mlp", "--dataset", "digits", "--n", "200", "--n-test", "50", "--epochs", "2",
                 "--measure-every", "1", "--depth", "1", "--width", "16", "--batch-size", "50",
                 "--seeds", "0", "1", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and [m["epoch"] for m in summary["measurements"]] == [1, 2]
    one = json.loads((out / "seed-1" / "results.json").read_text())
    assert one["config"]["seed"] == 1
    assert (out / "training_seeds.png").exists() and (out / "summary.csv").exists()


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


def test_the_official_schedule_measures_after_epoch_one_and_every_m_after():
    """``schedule="official"``: the scripts' ``for i in range(epochs + 1)`` with
    ``i % m == 0``: epochs + 1 trained, measured after epochs 1, m + 1, ...; the default
    measures after every m-th epoch and the last."""
    from dnc_jax.data import load_dataset, prepare
    from dnc_jax.nets.train import TrainConfig, train_epochs

    def measured(config):
        X, y = load_dataset("digits")
        data = prepare(X[:120], y[:120])
        return [r.epoch for r in train_epochs(data.X_train, data.y_train, config=config)
                if r.layers is not None]

    small = dict(depth=1, width=16, batch_size=40, optimizer="sgd", lr=0.01, measure_every=2)
    assert measured(TrainConfig(epochs=4, schedule="official", **small)) == [1, 3, 5]
    assert measured(TrainConfig(epochs=5, **small)) == [2, 4, 5]
    with pytest.raises(ValueError, match="schedule must be"):
        TrainConfig(schedule="paper").validate()
