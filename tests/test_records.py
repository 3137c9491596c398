"""Run folders: atomic writes, resume, damaged files."""

import json
import os

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dnc_jax import collapse_metrics, fit_kernel_predictor, kernel_agop
from dnc_jax.records import RunDirectory, atomic_write_json


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    atomic_write_json(str(path), {"layers": [1]})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(str(path), {"layers": [1, 2]})
    assert json.loads(path.read_text()) == {"layers": [1]}
    assert os.listdir(tmp_path) == ["results.json"]  # no temporary file left behind


def test_run_directory_resume_and_config_guard(tmp_path):
    run = RunDirectory(str(tmp_path), {"depth": 3}, "layers")
    results, state = run.resume()
    assert results["layers"] == [] and state is None
    results["layers"].append({"layer": 0})
    run.commit(results, {"X": np.arange(6.0).reshape(2, 3)})
    results["layers"].append({"layer": 1})
    run.commit(results, {"X": np.ones((2, 3))})
    assert sorted(os.listdir(tmp_path)) == ["results.json", "state-2.npz"]
    again, state = RunDirectory(str(tmp_path), {"depth": 3}, "layers").resume()
    assert len(again["layers"]) == 2 and np.array_equal(state["X"], np.ones((2, 3)))
    # results that name a step whose state is missing restart cleanly instead of failing
    os.unlink(tmp_path / "state-2.npz")
    fresh, state = RunDirectory(str(tmp_path), {"depth": 3}, "layers").resume()
    assert fresh["layers"] == [] and state is None
    with pytest.raises(ValueError, match="different configuration"):
        RunDirectory(str(tmp_path), {"depth": 4}, "layers").resume()


@pytest.mark.slow
def test_row_sharded_inputs_give_the_same_results(rng):
    """The scale-out plan: rows split over devices (4 CPU devices in tests) change nothing."""
    devices = jax.devices()
    assert len(devices) == 4
    mesh = Mesh(np.array(devices), ("rows",))
    rows = NamedSharding(mesh, PartitionSpec("rows", None))
    X = rng.standard_normal((64, 8)).astype(np.float32)
    Y = rng.standard_normal((64, 3)).astype(np.float32)
    pred = fit_kernel_predictor(X, Y, bandwidth=2.0, reg=1e-3)
    plain = kernel_agop(pred, X, batch_size=16)
    sharded = kernel_agop(pred, jax.device_put(X, rows), batch_size=16)
    np.testing.assert_allclose(sharded, plain, rtol=1e-5, atol=1e-7)
    labels = np.arange(64) % 4
    a = collapse_metrics(jax.device_put(X, rows), labels)
    b = collapse_metrics(X, labels)
    assert a.nc1 == pytest.approx(b.nc1, rel=1e-5) and a.nc1_pinv == pytest.approx(b.nc1_pinv, rel=1e-5)


def test_damaged_files_get_messages_a_user_can_act_on(tmp_path):
    """A truncated results.json names the file and what to do; a .npz that is not a zip
    (a dataset, a checkpoint) says what it is and what it should hold."""
    from dnc_jax.data import load_dataset
    from dnc_jax.records import RunDirectory

    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text('{"config": {"a": ')
    with pytest.raises(ValueError, match=r"results.json is not valid JSON .*another --out"):
        RunDirectory(str(run), {"a": 1}, "layers").resume()
    fake = tmp_path / "data.npz"
    fake.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match=r"data.npz is not an .npz archive.*X_train, y_train"):
        load_dataset(str(fake))
    ok = tmp_path / "ok"
    ok.mkdir()
    (ok / "results.json").write_text('{"config": {"a": 1}, "environment": {}, "layers": [{}]}')
    (ok / "state-1.npz").write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="checkpoint of step 1"):
        RunDirectory(str(ok), {"a": 1}, "layers").resume()
    # a real checkpoint cut short (a copy interrupted, a full disk): same message, and
    # nothing in the folder is rewritten
    np.savez(ok / "state-1.npz", X_train=np.ones((50, 40)))
    whole = (ok / "state-1.npz").read_bytes()
    (ok / "state-1.npz").write_bytes(whole[: len(whole) // 2])
    before = {f.name: f.read_bytes() for f in ok.iterdir()}
    with pytest.raises(ValueError, match=r"state-1.npz.*checkpoint of step 1"):
        RunDirectory(str(ok), {"a": 1}, "layers").resume()
    assert {f.name: f.read_bytes() for f in ok.iterdir()} == before


def test_a_damaged_run_folder_is_one_line_from_the_command(tmp_path, capsys):
    """Resuming into a folder whose results.json was cut short: exit 2, one line naming the
    file and what to do, the file left as it was."""
    from dnc_jax.cli import main

    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text('{"config": {"experiment": "deep_rfm", "n": ')
    args = ["deep-rfm", "--dataset", "digits", "--n", "100", "--depth", "1", "--width", "8",
            "--out", str(out), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "results.json" in err[0] and "--out" in err[0]
    assert (out / "results.json").read_text() == '{"config": {"experiment": "deep_rfm", "n": '
