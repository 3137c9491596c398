"""The dnc-jax command: results files, resume, bad arguments, presets, seeds, and the
flags generated from each configuration."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from helpers import assert_valid_results, without_time

from dnc_jax.cli import build_parser, main, preset_defaults
from dnc_jax.compilation import set_gpu_flags
from dnc_jax.deep_rfm_model import DeepRFMConfig
from dnc_jax.experiments import GrokkingRun, MultiIndexRun, run_deep_rfm
from dnc_jax.followups import (
    GrokkingConfig,
    MultiIndexConfig,
)
from dnc_jax.nets.train import TrainConfig
from dnc_jax.options import flag_name, from_args
from dnc_jax.presets import deep_rfm_preset, mlp_preset


@pytest.mark.slow
def test_cli_grokking_and_multi_index(tmp_path, capsys):
    out = tmp_path / "grok"
    assert main(["grokking", "--p", "5", "--iters", "3", "--train-fraction", "0.6",
                 "--out", str(out), "--no-progress"]) == 0
    assert not jax.config.jax_enable_x64  # the command's float64 does not leak
    results = assert_valid_results(out / "results.json")
    assert len(results["iterations"]) == 3 and "summary" in results
    assert GrokkingRun.from_json(results).to_json() == results  # the typed form reads it
    for name in ("grokking.png", "agop_heatmaps.png", "agop_fourier.png"):
        assert (out / name).stat().st_size > 1000
    assert "circ. dev." in capsys.readouterr().out
    out = tmp_path / "mi"
    assert main(["multi-index", "--d", "10", "--n", "100", "200", "--n-test", "50", "--steps",
                 "2", "--out", str(out), "--no-progress"]) == 0
    results = assert_valid_results(out / "results.json")
    assert [e["n"] for e in results["sizes"]] == [100, 200]
    assert MultiIndexRun.from_json(results).to_json() == results
    assert (out / "steps.csv").read_text().count("\n") == 5
    assert (out / "multi_index.png").stat().st_size > 1000
    assert main(["grokking", "--p", "12", "--out", str(tmp_path / "bad")]) == 2
    assert "prime" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_official_preset_with_override(tmp_path, capsys):
    out = tmp_path / "off"
    assert main(["deep-rfm", "--preset", "official", "--dataset", "digits", "--depth", "2",
                 "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    config = results["config"]
    assert (config["n"], config["n_test"], config["depth"]) == (500, 100, 2)  # depth overridden
    assert config["prepare"] == {"sort_by_class": True, "test_statistics": "own", "ddof": 1}
    assert config["refit_accuracy"] and config["width"] == 512 and config["bandwidth"] == 2.0
    for layer in results["layers"]:
        assert 0.5 < layer["refit_test_accuracy"] <= 1.0 and layer["refit_train_accuracy"] == 1.0
    printed = capsys.readouterr().out
    assert "refit test" in printed
    # the preset reproduces deep_rfm.py, so the table prints NC1 in its convention: ours / C
    assert "convention of dmbeaglehole/neural_collapse_rfm's deep_rfm.py" in printed
    np.testing.assert_allclose(printed_input_nc1(printed),
                               [layer["input"]["nc1"] / 10 for layer in results["layers"]], rtol=1e-3)
    # the cosine variant takes the layer's input dimension as its width
    out = tmp_path / "rff"
    assert main(["deep-rfm", "--preset", "official", "--features", "cosine", "--dataset",
                 "digits", "--depth", "2", "--out", str(out), "--no-progress"]) == 0
    layers = json.loads((out / "results.json").read_text())["layers"]
    assert [layer["input_dim"] for layer in layers] == [64, 64]


@pytest.mark.slow
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


@pytest.mark.slow
def test_cli_mlp_official_preset(tmp_path, capsys):
    out = tmp_path / "mlp"
    assert main(["mlp", "--preset", "official", "--dataset", "digits", "--n", "200",
                 "--n-test", "60", "--epochs", "2", "--measure-every", "2", "--depth", "2",
                 "--out", str(out), "--no-progress"]) == 0
    config = assert_valid_results(out / "results.json")["config"]
    assert (config["n"], config["n_test"], config["epochs"], config["depth"]) == (200, 60, 2, 2)
    assert (config["optimizer"], config["lr"], config["classifier_init"], config["bias"],
            config["last_batch"]) == ("sgd", 0.01, "torch", False, "keep")
    assert config["prepare"] == {"sort_by_class": True, "test_statistics": "own", "ddof": 1}
    printed = capsys.readouterr().out
    assert "convention of dmbeaglehole/neural_collapse_rfm's nc_nn.py" in printed
    last = assert_valid_results(out / "results.json")["measurements"][-1]
    np.testing.assert_allclose(printed_input_nc1(printed[printed.index("\nlayer"):]),
                               [rec["input"]["nc1"] / 10 for rec in last["layers"]], rtol=1e-3)


@pytest.mark.slow
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


COMMAND_CONFIGS = [("run", DeepRFMConfig), ("deep-rfm", DeepRFMConfig), ("mlp", TrainConfig),
                   ("grokking", GrokkingConfig), ("multi-index", MultiIndexConfig)]


def _subparser(parser, command):
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return sub.choices[command]


@pytest.mark.parametrize("command,config", COMMAND_CONFIGS)
def test_every_configuration_field_has_its_generated_flag(command, config):
    """One flag per field, named after it; parsing no flag gives the configuration's own
    defaults, and a flag's value reaches its field."""
    parser = build_parser()
    options = {s: a for a in _subparser(parser, command)._actions for s in a.option_strings}
    for field in dataclasses.fields(config):
        assert flag_name(field.name) in options, (command, field.name)
        assert options[flag_name(field.name)].dest == field.name
    assert from_args(config, parser.parse_args([command])) == config()
    args = parser.parse_args([command, "--seed", "7"])
    assert from_args(config, args).seed == 7


def test_presets_and_every_solver_option_reach_the_configuration():
    """A preset's configuration is the flags' default (other flags still override it), and
    every solver option, memory_budget included, is reachable from the command line."""
    argv = ["deep-rfm", "--preset", "official", "--features", "cosine", "--dataset", "svhn"]
    args = build_parser(preset_defaults(argv)).parse_args(argv)
    assert from_args(DeepRFMConfig, args) == deep_rfm_preset("official", "svhn", "cosine").config
    assert (args.n, args.n_test) == (500, 100)
    argv = ["mlp", "--preset", "ratio", "--epochs", "3"]
    args = build_parser(preset_defaults(argv)).parse_args(argv)
    assert from_args(TrainConfig, args) == dataclasses.replace(mlp_preset("ratio").config,
                                                               epochs=3)
    argv = ["deep-rfm", "--solver", "cg", "--tol", "1e-4", "--max-iter", "9", "--precond-rank",
            "7", "--memory-budget", "1000000", "--centers", "5", "--agop-samples", "auto"]
    config = from_args(DeepRFMConfig, build_parser().parse_args(argv))
    options = config.solver_options()
    assert (options.solver, options.tol, options.max_iter, options.precond_rank,
            options.memory_budget, options.centers) == ("cg", 1e-4, 9, 7, 1_000_000, 5)
    assert config.agop_samples == "auto"
    argv = ["mlp", "--bias", "--no-bias"]  # booleans both ways; the last one wins
    assert from_args(TrainConfig, build_parser().parse_args(argv)).bias is False


def _a_value(field) -> str:
    """A command-line value for a solver option that is not its default: the last choice,
    else by type (7 for counts, 0.5 for fractions)."""
    choices = field.metadata.get("choices")
    if choices:
        return str(choices[-1])
    return "0.5" if field.type in ("float", float) else "7"


def test_each_solver_option_declared_once_reaches_commands_estimators_and_results(capsys):
    """``SolverOptions`` declares each solver option once (default, help, choices): the
    Deep RFM and multi-index configurations are ``SolverOptions`` with more fields (the
    same field objects, not declared again), so each option is a flag of both commands
    with its default and help, reaches the configuration and ``solver_options()``, and is
    a key of the runs' recorded configuration unless declared ``recorded=False``; the
    estimators take it under the same name (``max_iter`` as ``cg_max_iter``) with the same
    default and hand it on whole (``SolverOptions.of``). An option added to
    ``SolverOptions`` reaches all of these but the estimator, whose flat ``__init__``
    (scikit-learn's rule) must list it: this test fails until it does."""
    from dnc_jax import RFM, RFMClassifier, RFMRegressor
    from dnc_jax.followups import MultiIndexConfig
    from dnc_jax.option_fields import recorded_config
    from dnc_jax.solvers import SolverOptions

    renamed = {"max_iter": "cg_max_iter"}
    options = dataclasses.fields(SolverOptions)
    assert [f.name for f in options] == ["solver", "centers", "tol", "max_iter", "precond_rank",
                                         "memory_budget"]
    values = {f.name: _a_value(f) for f in options}
    for command, config in (("deep-rfm", DeepRFMConfig), ("multi-index", MultiIndexConfig)):
        fields = {f.name: f for f in dataclasses.fields(config)}
        assert all(fields[f.name] is f for f in options)  # inherited, not declared again
        parser = build_parser()
        defaults = parser.parse_args([command])
        argv = [command] + [token for f in options for token in (flag_name(f.name),
                                                                 values[f.name])]
        built = from_args(config, parser.parse_args(argv))
        for f in options:
            assert getattr(defaults, f.name) == f.default
            assert str(getattr(built, f.name)) == values[f.name]
            assert getattr(built.solver_options(), f.name) == getattr(built, f.name)
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        help_text = " ".join(capsys.readouterr().out.split())
        for f in options:
            assert " ".join(f.metadata["help"].split()) in help_text, (command, f.name)
        recorded = recorded_config(built)
        assert {f.name for f in options if f.name in recorded} == {
            f.name for f in options if f.metadata["recorded"]}
    chosen = built.solver_options()  # every option away from its default
    for estimator in (RFM, RFMClassifier, RFMRegressor):
        params = estimator().get_params()
        for f in options:
            assert params[renamed.get(f.name, f.name)] == f.default, (estimator, f.name)
        given = {renamed.get(f.name, f.name): getattr(chosen, f.name) for f in options}
        assert SolverOptions.of(estimator(**given), **renamed) == chosen


def _layers_without_time(path):
    with open(path) as fh:
        results = json.load(fh)
    return [without_time(rec) for rec in results["layers"]]


@pytest.mark.slow
def test_deep_rfm_resume_equals_uninterrupted(tmp_path):
    config = DeepRFMConfig(depth=4, width=64, seed=1)
    kw = dict(dataset="digits", n=400, n_test=100, config=config, progress=False)
    full = tmp_path / "full"
    run_deep_rfm(str(full), **kw)
    part = tmp_path / "part"
    run_deep_rfm(str(part), stop_after=2, **kw)  # "killed" after two layers
    assert len(_layers_without_time(part / "results.json")) == 2
    run_deep_rfm(str(part), **kw)
    assert _layers_without_time(part / "results.json") == _layers_without_time(full / "results.json")
    assert sorted(os.listdir(part)) == ["collapse.png", "extras.npz", "layers.csv", "results.json",
                                        "state-4.npz"]
    with np.load(part / "extras.npz") as a, np.load(full / "extras.npz") as b:
        np.testing.assert_array_equal(a["grams"], b["grams"])  # per-layer Grams survive resume
    # the same folder with another configuration is refused
    with pytest.raises(ValueError, match="different configuration"):
        run_deep_rfm(str(part), **{**kw, "config": DeepRFMConfig(depth=4, width=32)})


@pytest.mark.slow
def test_cli_deep_rfm_writes_results(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["deep-rfm", "--dataset", "digits", "--n", "300", "--depth", "2", "--width",
                 "32", "--out", str(out), "--no-progress", "--save-model"])
    assert code == 0
    from dnc_jax import load_deep_rfm

    assert load_deep_rfm(str(out)).depth == 2  # --save-model: the model beside the records
    results = assert_valid_results(out / "results.json")
    assert set(results) == {"config", "environment", "layers"}
    layer = results["layers"][0]
    assert {"input", "projected", "output", "train_accuracy", "test_accuracy", "seconds"} <= set(layer)
    assert "nc1" in layer["input"] and results["environment"]["versions"]["jax"]
    assert (out / "layers.csv").read_text().count("\n") == 3
    assert (out / "collapse.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "train acc" in printed and "dnc_jax's convention" in printed
    np.testing.assert_allclose(printed_input_nc1(printed),
                               [layer["input"]["nc1"] for layer in results["layers"]], rtol=1e-3)


def printed_input_nc1(text: str) -> list[float]:
    """The first NC1 column (at each layer's input) of a printed per-layer table."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["layer"]) + 1
    return [float(line.split()[1]) for line in lines[start:] if line.split()[:1] != ["wrote"]]


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,message",
    [
        (["deep-rfm", "--dataset", "imagenet"], "invalid choice"),
        (["deep-rfm", "--dataset", "digits", "--n", "100000"], "only"),
        (["deep-rfm", "--depth", "0"], "must be >= 1"),
        (["deep-rfm", "--width", "0"], "must be >= 1"),
        (["deep-rfm", "--reg", "-1"], "must be >= 0"),
    ],
)
def test_bad_arguments_one_line_exit_2(args, message, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "dnc_jax.cli", *args, "--out", str(tmp_path / "x"), "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr


def test_unwritable_output_fails_before_any_work(capsys, monkeypatch):
    """One line, exit 2, and no layer computed (no data loaded) first: every command."""
    import importlib

    deep = importlib.import_module("dnc_jax.experiments.deep_rfm")
    mlp = importlib.import_module("dnc_jax.experiments.mlp")

    def no_data(*args, **kwargs):
        raise AssertionError("data loaded before the output folder was checked")

    monkeypatch.setattr(deep, "load_prepared", no_data)
    monkeypatch.setattr(mlp, "load_prepared", no_data)
    for command in ("deep-rfm", "mlp"):
        assert main([command, "--out", "/dev/null/x", "--n", "200", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["dnc-jax: error: cannot write to the output folder '/dev/null/x': "
                       "Not a directory."], command


@pytest.mark.slow
def test_cli_run_and_mlp_write_their_files(tmp_path, capsys):
    """The README's main command (``run``, on the embedded MNIST) and ``mlp`` at small
    sizes: exit 0, the files, the CSV rows; ``mlp`` refuses a folder of another config."""
    out = tmp_path / "run"
    assert main(["run", "--n", "300", "--n-test", "100", "--depth", "2", "--width", "16",
                 "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["dataset"] == "mnist5k" and len(results["layers"]) == 2
    assert results["config"]["n"] == 300 and results["config"]["n_test"] == 100
    out = tmp_path / "mlp"
    args = ["mlp", "--dataset", "digits", "--n", "200", "--n-test", "50", "--depth", "2",
            "--width", "16", "--epochs", "4", "--measure-every", "2", "--out", str(out),
            "--no-progress"]
    assert main(args) == 0
    csv = (out / "measurements.csv").read_text().splitlines()
    assert len(csv) == 1 + 2 * 2  # two measurements (epochs 2, 4) x two hidden layers
    header = csv[0].split(",")
    assert {"epoch", "layer", "nfa_sqrt_agop", "right_share", "input_nc1", "output_nc1"} <= set(header)
    assert [row.split(",")[header.index("epoch")] for row in csv[1:]] == ["2", "2", "4", "4"]
    assert (out / "training.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(args[:-3] + ["--width", "32", "--out", str(out), "--no-progress"]) == 2
    assert "different configuration" in capsys.readouterr().err


def test_cli_dataset_errors_exit_2(tmp_path, capsys, monkeypatch):
    """An unprepared tensorflow-datasets dataset and a missing extra: one line, exit 2."""
    pytest.importorskip("tensorflow_datasets")
    assert main(["deep-rfm", "--dataset", "mnist", "--data-dir", str(tmp_path),
                 "--out", str(tmp_path / "a"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "tfds build mnist" in err and "--download" in err
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # the extra not installed
    assert main(["deep-rfm", "--dataset", "cifar10", "--out", str(tmp_path / "b"),
                 "--no-progress"]) == 2
    assert "dnc-jax[tfds]" in capsys.readouterr().err


def test_gpu_flags_added_once_and_never_over_the_users():
    env = {}
    assert set_gpu_flags(env) == ["--xla_gpu_enable_triton_gemm=false"]
    assert env["XLA_FLAGS"] == "--xla_gpu_enable_triton_gemm=false"
    assert set_gpu_flags(env) == [] and env["XLA_FLAGS"] == "--xla_gpu_enable_triton_gemm=false"
    env = {"XLA_FLAGS": "--xla_dump_to=/tmp/x --xla_gpu_enable_triton_gemm=true"}
    assert set_gpu_flags(env) == []
    assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_gpu_enable_triton_gemm=true"
    env = {"XLA_FLAGS": "--xla_dump_to=/tmp/x"}
    set_gpu_flags(env)
    assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_gpu_enable_triton_gemm=false"
