"""Two processes (jax.distributed) compute what one does."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from worker_data import layer_config, run_options, small_digits

from dnc_jax import data_mesh
from dnc_jax.deep_rfm_model import DeepRFMConfig, deep_rfm_layers
from dnc_jax.layer_records import LayerRecord


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_processes(*args: str) -> list[str]:
    """The outputs of two ``distributed_worker.py`` processes joined on localhost."""
    port = _free_port()
    worker = os.path.join(os.path.dirname(__file__), "distributed_worker.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "JAX_"))}
    procs = [subprocess.Popen([sys.executable, worker, str(port), str(pid), "2", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for pid in (0, 1)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    return outputs


def _printed(output: str, tag: str):
    line = next(ln for ln in output.splitlines() if ln.startswith(tag + " "))
    return json.loads(line[len(tag) + 1:])


def _assert_same_layer(two: dict, one: LayerRecord) -> None:
    """``two``: a record's JSON form, printed by a worker process."""
    two_rec = LayerRecord.from_json(two)
    for point in ("input", "projected", "output"):
        for field in ("nc1", "nc2", "cdnv", "trace_within"):
            assert getattr(two_rec.at(point), field) == pytest.approx(
                getattr(one.at(point), field), rel=1e-5), (point, field)
    assert two_rec.train_accuracy == one.train_accuracy
    assert two_rec.test_accuracy == one.test_accuracy
    assert two_rec.solve.iterations == one.solve.iterations
    assert two_rec.agop.top_eigenvalues == pytest.approx(one.agop.top_eigenvalues, rel=1e-5)


@pytest.mark.slow
def test_two_processes_compute_the_same_deep_rfm_layer():
    """Two processes on localhost, joined by jax.distributed over CPU collectives (gloo),
    2 devices each and each loading only its own rows, give the one-process layer."""
    X, y = small_digits()
    one, one_state = next(deep_rfm_layers(X, y, config=DeepRFMConfig(**layer_config()),
                                          mesh=data_mesh("all")))
    outputs = _two_processes()
    _assert_same_layer(_printed(outputs[0], "RECORD"), one)
    line = next(ln for ln in outputs[0].splitlines() if ln.startswith("FEATURES "))
    shape, total = json.loads(line[len("FEATURES "):])
    features = one_state.to_host()["X_train"]
    assert tuple(shape) == features.shape and total == pytest.approx(float(features.sum()), rel=1e-5)


@pytest.mark.slow
def test_two_processes_run_the_command_each_on_its_own_rows(tmp_path):
    """The command's Deep RFM run (``run_deep_rfm``) in two processes: each builds only its
    own rows of the shifted MNIST (202 of the 404 padded rows; together each of the 402
    once), standardised with statistics reduced across the processes; each checkpoints its
    own block; killed after one layer and resumed by two new processes, the run equals one
    process's uninterrupted run on the whole data."""
    from dnc_jax.experiments.deep_rfm import run_deep_rfm

    one = run_deep_rfm(str(tmp_path / "one"), mesh=data_mesh("all"), progress=False,
                       **run_options()).layers
    out = str(tmp_path / "two")
    first = _two_processes(out, "1")
    assert len(_printed(first[0], "LAYERS")) == 1
    assert sorted(os.listdir(out)) == ["collapse.png", "extras.npz", "layers.csv", "results.json",
                                       "state-1.process-0-of-2.npz", "state-1.process-1-of-2.npz"]
    with np.load(os.path.join(out, "state-1.process-1-of-2.npz")) as block:
        assert block["X_train"].shape == (202, 64) and not block["X_train"][200:].any()
    built = [_printed(o, f"BUILT {pid}") for pid, o in enumerate(first)]
    assert built == [202, 200]  # process 1's last two rows are padding
    resumed = _two_processes(out, "0")
    assert [_printed(o, f"BUILT {pid}") for pid, o in enumerate(resumed)] == built
    two = _printed(resumed[0], "LAYERS")
    assert len(two) == len(one) == 2
    for a, b in zip(two, one, strict=True):
        _assert_same_layer(a, b)
    assert "state-2.process-0-of-2.npz" in os.listdir(out)
    assert "state-1.process-0-of-2.npz" not in os.listdir(out)
    with np.load(os.path.join(out, "extras.npz")) as a, \
            np.load(tmp_path / "one" / "extras.npz") as b:
        np.testing.assert_allclose(a["grams"], b["grams"], atol=1e-5)
