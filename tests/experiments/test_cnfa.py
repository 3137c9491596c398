"""``dnc-jax probe``: the official vanilla CNN, its training, the run folder and resume."""

import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import assert_valid_results

from dnc_jax.cli import main
from dnc_jax.experiments import cnfa
from dnc_jax.experiments.common import image_split
from dnc_jax.nets.cnn import VanillaCNN


def test_vanilla_cnn_is_the_official_architecture():
    model = VanillaCNN((8, 8, 1), 10, width=6, init=0.05, rngs=nnx.Rngs(0))
    assert len(model.convs) == 4
    for conv in model.convs:
        assert conv.bias is None and conv.kernel.shape[:2] == (3, 3)
    assert model.head.bias is None and model.head.kernel.shape == (8 * 8 * 6, 10)
    assert model(jnp.zeros((2, 8, 8, 1))).shape == (2, 10)
    weights = np.concatenate([np.ravel(model.head.kernel[...])]
                             + [np.ravel(c.kernel[...]) for c in model.convs])
    assert abs(weights.std() / 0.05 - 1) < 0.05 and abs(weights.mean()) < 0.005


def test_training_fits_the_training_images():
    X, y = image_split("digits", "train", 200)
    config = cnfa.CNFAConfig(width=8, epochs=15, n=200, init=0.1, lr=3e-3)
    model = VanillaCNN(cnfa.IMAGE, 10, width=8, init=0.1, rngs=nnx.Rngs(1))

    def accuracy():
        return float(np.mean(np.argmax(np.asarray(model(jnp.asarray(X))), axis=1) == y))

    before = accuracy()
    cnfa.train_cnn(model, X, y, config, seed=1)
    assert before < 0.3 and accuracy() > 0.9


@pytest.mark.slow
def test_probe_command_writes_resumes_and_summarises(tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "probe")
    argv = ["probe", "--width", "4", "--epochs", "1", "--n", "60", "--probe-batch", "32",
            "--out", out, "--no-progress"]
    assert main(argv + ["--seeds", "3"]) == 0
    printed = capsys.readouterr().out
    assert "convs/0" in printed and "test accuracy" in printed and "over 1 seeds" in printed
    results = assert_valid_results(os.path.join(out, "results.json"))
    assert [s["seed"] for s in results["seeds"]] == [3]
    layers = results["seeds"][0]["trained"]
    assert [entry["path"] for entry in layers] == ["convs/0", "convs/1", "convs/2", "convs/3", "head"]
    assert all(-1 <= entry["cosine"] <= 1 + 1e-12 for entry in layers)  # a cosine, to rounding
    assert os.path.getsize(os.path.join(out, "cnfa.png")) > 0
    calls = []
    real = cnfa.cnfa_seed
    monkeypatch.setattr(cnfa, "cnfa_seed", lambda config, seed: calls.append(seed) or real(config, seed))
    assert main(argv + ["--seeds", "3", "4"]) == 0  # seed 3 is read back, only 4 runs
    assert calls == [4]
    assert "over 2 seeds" in capsys.readouterr().out


def test_bad_options_are_one_line_errors(capsys):
    with pytest.raises(SystemExit):
        main(["probe", "--width", "four"])
    assert main(["probe", "--width", "0", "--out", "/tmp/unused"]) == 2
    assert "width must be >= 1" in capsys.readouterr().err
    assert main(["probe", "--init", "-1", "--out", "/tmp/unused"]) == 2
    assert "init and lr must be > 0" in capsys.readouterr().err
    assert not os.path.exists("/tmp/unused")
