"""Scale-out: CG and Nyström solves against Cholesky, sampled AGOPs, and the
same answers on the suite's 4 CPU devices as on one."""

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from worker_data import layer_config, run_options, small_digits

from dnc_jax import collapse_metrics, data_mesh, fit_kernel_ridge, kernel_agop
from dnc_jax.data import load_dataset, one_hot_pm1, prepare
from dnc_jax.deep_rfm_model import DeepRFMConfig, deep_rfm_layers
from dnc_jax.estimators import RFMClassifier
from dnc_jax.rfm import fit_with_agop
from dnc_jax.sharding import DATA, Rows, as_rows


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def digits():
    """402 standardised, unit-norm digits (not a multiple of 4: the padding is exercised)."""
    X, y = load_dataset("digits", "train", 402)
    data = prepare(X, y)
    return _unit(data.X_train).astype(np.float32), data.y_train, one_hot_pm1(data.y_train, 10)


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def _coefs(predictor, n):
    return np.asarray(predictor.coefs)[:n]


@pytest.mark.parametrize("kernel, bandwidth", [("laplace", 2.0), ("gaussian", 0.5)])
def test_cg_equals_cholesky(digits, kernel, bandwidth):
    """Float32, at bandwidths where float32 Cholesky itself is accurate to ~1e-5."""
    X, _, Y = digits
    exact, _ = fit_kernel_ridge(X, Y, kernel=kernel, bandwidth=bandwidth, reg=1e-2,
                                solver="cholesky")
    for budget in (None, 0):  # kernel rows held, and recomputed in every product
        fit, info = fit_kernel_ridge(X, Y, kernel=kernel, bandwidth=bandwidth, reg=1e-2, solver="cg",
                                     tol=1e-6, precond_rank=100, memory_budget=budget,
                                     block_size=128)
        assert info.solver == "cg" and info.iterations >= 1 and info.residual < 1e-4
        assert _rel(_coefs(fit, len(X)), exact.coefs) <= 1e-4
        assert _rel(fit.predict(X[:50] * 0.9), exact.predict(X[:50] * 0.9)) <= 1e-4
        assert _rel(kernel_agop(fit, X), kernel_agop(exact, X)) <= 1e-4


def test_cg_equals_cholesky_float64(digits, x64):
    X, _, Y = digits
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    exact, _ = fit_kernel_ridge(X64, Y64, bandwidth=2.0, reg=1e-3, solver="cholesky")
    fit, info = fit_kernel_ridge(X64, Y64, bandwidth=2.0, reg=1e-3, solver="cg", tol=1e-10,
                                 precond_rank=50)
    assert fit.coefs.dtype == jnp.float64 and info.residual < 1e-9
    assert _rel(fit.coefs, exact.coefs) <= 1e-7


def test_nystrom_with_every_point_is_the_exact_fit(digits, x64):
    X, _, Y = (a.astype(np.float64) for a in digits)
    exact, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, solver="cholesky")
    fit, info = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, centers=X, tol=1e-12)
    assert info.solver == "nystrom" and info.rank == len(X)
    assert _rel(fit.coefs, exact.coefs) <= 1e-6
    # sampled centres: all n of them, in another order, give the same predictor
    sampled, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, centers=len(X), tol=1e-12)
    assert _rel(sampled.predict(X), exact.predict(X)) <= 1e-6


def test_nystrom_float32_and_fewer_centres(digits):
    X, y, Y = digits
    exact, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, solver="cholesky")
    full, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, centers=len(X), tol=1e-7)
    assert _rel(full.predict(X), exact.predict(X)) <= 1e-4
    small, info = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, centers=100)
    assert small.centers.shape == (100, X.shape[1]) and info.rank == 100
    # an estimator, not the exact fit: fewer centres fit the training data less closely
    accuracy = np.mean(np.argmax(np.asarray(small.predict(X)), axis=1) == y)
    assert 0.8 < accuracy < 1.0


def test_device_preconditioner_gives_the_same_fit(digits, monkeypatch):
    """The accelerator path of the Falkon preconditioner (float32 factors on the device,
    taken here on the CPU by pretending the backend is a GPU) factors
    ``(n/m) K_mm^2 + reg K_mm`` and converges to the host float64 path's coefficients."""
    from dnc_jax.kernels import kernel_matrix
    from dnc_jax.solvers.nystrom import falkon_factors_on_device

    X, _, Y = digits
    Z = jnp.asarray(X[:150])
    K = kernel_matrix(Z, Z, "laplace", 2.0)
    L, R = falkon_factors_on_device(K, len(X), 1e-3)
    LR = np.asarray(L, np.float64) @ np.asarray(R, np.float64)
    K64 = np.asarray(K, np.float64)
    target = (len(X) / 150) * K64 @ K64 + 1e-3 * K64
    assert _rel(LR @ LR.T, target) <= 1e-3
    host, host_info = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, centers=150, tol=1e-6)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    device, device_info = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, centers=150, tol=1e-6)
    assert _rel(device.coefs, host.coefs) <= 1e-3
    assert abs(device_info.iterations - host_info.iterations) <= 3


def test_sampled_agop(digits):
    X, _, Y = digits
    fit, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3)
    full = kernel_agop(fit, X)
    np.testing.assert_array_equal(kernel_agop(fit, X, samples=len(X)), full)
    half = kernel_agop(fit, X, samples=200, seed=3)
    assert 0 < _rel(half, full) < 0.3  # an estimate: close, not equal
    np.testing.assert_array_equal(half, kernel_agop(fit, X, samples=200, seed=3))
    np.testing.assert_array_equal(kernel_agop(fit, X, samples=200),  # the default seed is 0
                                  kernel_agop(fit, X, samples=200, seed=0))
    _, A_all, _ = fit_with_agop(X, Y, bandwidth=2.0, reg=1e-3, agop_samples=len(X))
    assert _rel(A_all, full) <= 1e-5


def test_sampled_agop_of_sharded_rows_takes_the_same_rows(digits):
    """The sampled AGOP of ``Rows`` on 4 devices (a path only sharded input reaches) draws
    the same rows as on one device: equal to float32 summation order (1e-5), and another
    seed's sample is farther away than that."""
    from dnc_jax.sharding import as_rows

    X, _, Y = digits
    fit, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3)
    rows = as_rows(X, data_mesh("all"))
    one = kernel_agop(fit, X, samples=200, seed=3)
    assert _rel(kernel_agop(fit, rows, samples=200, seed=3), one) <= 1e-5
    assert _rel(kernel_agop(fit, rows, samples=200, seed=4), one) > 1e-3


def test_unconverged_cg_warns(digits):
    X, _, Y = digits
    with pytest.warns(RuntimeWarning, match="unconverged after 2 iterations") as caught:
        _, info = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-4, solver="cg", max_iter=2,
                                   precond_rank=2)
    assert info.iterations == 2
    assert caught[0].filename == __file__  # the warning points at the caller's line


@pytest.mark.parametrize("bad, match", [
    (dict(solver="cg", tol=0.0), "tol"),
    (dict(solver="cg", tol=2.0), "tol"),
    (dict(solver="cg", max_iter=0), "max_iter"),
    (dict(solver="cg", precond_rank=0), "precond_rank"),
    (dict(solver="qr"), "solver"),
    (dict(solver="nystrom"), "needs centers"),
    (dict(centers=0), "centers"),
    (dict(centers=10_000), "centers"),
    (dict(centers=np.ones((5, 3))), "features"),
    (dict(centers=np.full((5, 64), np.nan)), "NaN"),
    (dict(mesh="all"), "Mesh"),
    (dict(mesh=jax.sharding.Mesh(np.array(jax.devices()), ("rows",))), "one axis"),
    (dict(mesh=data_mesh("all"), solver="cholesky"), "one device"),
])
def test_bad_solver_arguments_raise(digits, bad, match):
    X, _, Y = digits
    with pytest.raises(ValueError, match=match):
        fit_kernel_ridge(X, Y, bandwidth=2.0, **bad)


def test_bad_agop_samples_and_devices_raise(digits):
    X, _, Y = digits
    fit, _ = fit_kernel_ridge(X, Y, bandwidth=2.0)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="agop_samples"):
            kernel_agop(fit, X, samples=bad)
    with pytest.raises(ValueError, match="devices"):
        data_mesh(99)
    with pytest.raises(ValueError, match="devices"):
        data_mesh("some")


def _assert_row_sharded(array, mesh):
    assert array.sharding == NamedSharding(mesh, P(DATA, *([None] * (array.ndim - 1))))
    assert len(array.addressable_shards) == 4
    assert {s.data.shape[0] for s in array.addressable_shards} == {array.shape[0] // 4}


@pytest.mark.parametrize("solver, extra", [("cg", {"precond_rank": 80}),
                                           ("nystrom", {"centers": 150})])
def test_sharded_fit_and_agop_equal_one_device(digits, solver, extra):
    X, _, Y = digits
    mesh = data_mesh("all")
    assert mesh.devices.size == 4
    one, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, solver=solver, tol=1e-7, **extra)
    four, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, solver=solver, tol=1e-7,
                               mesh=mesh, **extra)
    if solver == "cg":  # the centres stay sharded with their rows
        assert four.mesh is mesh
        _assert_row_sharded(four.centers, mesh)
        _assert_row_sharded(four.coefs, mesh)
    # Nyström's normal equations square the condition number, so in float32 its
    # coefficients move with the order of the cross-device sums; its predictions do not.
    # CG's move by ~1e-5 (measured 1.04e-5): kernel entries of near pairs carry the
    # float32 round-off of differently blocked products (nothing is snapped to 0 since
    # issue 10), times the system's conditioning.
    assert _rel(_coefs(four, len(X)), _coefs(one, len(X))) <= (2e-5 if solver == "cg" else 1e-3)
    Xt = X[:37] * 0.5
    assert _rel(four.predict(Xt), one.predict(Xt)) <= (1e-5 if solver == "cg" else 3e-5)
    A_one = kernel_agop(one, X, batch_size=64)
    # the same predictor's AGOP with the points sharded over 4 devices
    assert _rel(kernel_agop(one, X, batch_size=64, mesh=mesh), A_one) <= 1e-5
    A_four = kernel_agop(four, X, batch_size=64, mesh=mesh)
    assert _rel(A_four, A_one) <= (1e-5 if solver == "cg" else 2e-4)


def test_sharded_collapse_metrics_equal_one_device(digits):
    X, y, _ = digits
    mesh = data_mesh("all")
    rows = as_rows(X + 3.0, mesh)
    _assert_row_sharded(rows.data, mesh)
    assert rows.data.shape[0] == 404 and rows.n == 402
    a = collapse_metrics(rows, y, predictions=(y + 1) % 10)
    b = collapse_metrics(X + 3.0, y, predictions=(y + 1) % 10)
    for field in ("nc1", "nc1_pinv", "nc2", "nc2_etf", "cdnv", "trace_within", "trace_total"):
        assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-5), field
    assert a.ncc_accuracy == b.ncc_accuracy and a.ncc_mismatch == b.ncc_mismatch
    assert a.num_samples == 402


def test_sharded_deep_rfm_layer_equals_one_device(digits):
    X, y, _ = digits
    config = DeepRFMConfig(depth=1, width=64, solver="cg", precond_rank=100, tol=1e-7)
    Xt = X[:30]
    one = next(deep_rfm_layers(X, y, Xt, y[:30], config=config))
    mesh = data_mesh("all")
    four = next(deep_rfm_layers(X, y, Xt, y[:30], config=config, mesh=mesh))
    (r1, s1), (r4, s4) = one, four
    _assert_row_sharded(s4.X_train.data, mesh)
    np.testing.assert_allclose(s4.X_train.valid(), s1.X_train.valid(), rtol=1e-4, atol=1e-5)
    for point in ("input", "projected", "output"):
        for field in ("nc1", "nc2", "cdnv"):
            assert r4[point][field] == pytest.approx(r1[point][field], rel=1e-5, abs=1e-7)
    assert r4["train_accuracy"] == r1["train_accuracy"]
    assert r4["test_accuracy"] == r1["test_accuracy"]
    assert r4["solve"]["solver"] == "cg" and r4["solve"]["iterations"] >= 1


def test_rfm_classifier_with_nystrom_and_sampled_agop(digits):
    X, y, _ = digits
    model = RFMClassifier(bandwidth=2.0, iters=2, centers=200, agop_samples=300, devices="all")
    model.fit(X, y)
    assert [h["solve"]["solver"] for h in model.history_] == ["nystrom"] * 3
    assert model.score(X, y) > 0.9


def test_rows_survive_a_round_trip(digits):
    X, _, _ = digits
    rows = as_rows(X, data_mesh("all"))
    assert isinstance(rows, Rows) and rows.shape == X.shape
    np.testing.assert_array_equal(rows.valid(), X)
    np.testing.assert_array_equal(np.asarray(rows.data[402:]), 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert as_rows(rows, rows.mesh) is rows


def test_unlabelled_test_data_is_normalised_and_mapped(digits):
    """X_test without y_test follows the same layers as with it (a bug once: the test rows
    took another path)."""
    X, y, _ = digits
    config = DeepRFMConfig(depth=2, width=32)
    with_labels = list(deep_rfm_layers(X[:300], y[:300], X[300:], y[300:], config=config))
    without = list(deep_rfm_layers(X[:300], y[:300], X[300:] * 7.0, config=config))
    np.testing.assert_allclose(without[-1][1].X_test.valid(), with_labels[-1][1].X_test.valid(),
                               rtol=1e-5, atol=1e-6)
    assert without[0][0]["test_accuracy"] is None
    refit = DeepRFMConfig(depth=1, width=32, refit_accuracy=True)
    record = next(deep_rfm_layers(X[:300], y[:300], X[300:], config=refit))[0]
    assert record["refit_test_accuracy"] is None and 0.9 < record["refit_train_accuracy"] <= 1.0
    for bad in ((np.where(np.eye(300, 64, dtype=bool), np.nan, X[:300]), X[300:]),
                (X[:300], np.where(np.eye(102, 64, dtype=bool), np.inf, X[300:]))):
        with pytest.raises(ValueError, match="NaN or infinite"):
            next(deep_rfm_layers(*bad[:1], y[:300], bad[1], config=config))


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


def _assert_same_layer(two: dict, one: dict) -> None:
    for point in ("input", "projected", "output"):
        for field in ("nc1", "nc2", "cdnv", "trace_within"):
            assert two[point][field] == pytest.approx(one[point][field], rel=1e-5), (point, field)
    assert two["train_accuracy"] == one["train_accuracy"]
    assert two["test_accuracy"] == one["test_accuracy"]
    assert two["solve"]["iterations"] == one["solve"]["iterations"]
    assert two["agop"]["top_eigenvalues"] == pytest.approx(one["agop"]["top_eigenvalues"], rel=1e-5)


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


def test_two_processes_run_the_command_each_on_its_own_rows(tmp_path):
    """The command's Deep RFM run (``run_deep_rfm``) in two processes: each builds only its
    own rows of the shifted MNIST (202 of the 404 padded rows; together each of the 402
    once), standardised with statistics reduced across the processes; each checkpoints its
    own block; killed after one layer and resumed by two new processes, the run equals one
    process's uninterrupted run on the whole data."""
    from dnc_jax.experiments.deep_rfm import run_deep_rfm

    one = run_deep_rfm(str(tmp_path / "one"), mesh=data_mesh("all"), progress=False,
                       **run_options())["layers"]
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


def test_full_rank_preconditioners_are_exact(digits, x64):
    """With every point as a landmark (CG) or centre (Nyström), the preconditioner equals
    the system's matrix (``F F^T = K``; Falkon's ``(n/m) K_mm^2 + reg K_mm = K^2 + reg K``),
    so PCG converges in a couple of iterations; a rank-2 preconditioner needs many."""
    X, _, Y = (a.astype(np.float64) for a in digits)
    counts = {}
    for rank in (len(X), 2):
        _, info = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, solver="cg", tol=1e-8,
                                   precond_rank=rank)
        counts[rank] = info.iterations
    _, nystrom_info = fit_kernel_ridge(X, Y, bandwidth=2.0, reg=1e-3, centers=len(X), tol=1e-8)
    assert counts[len(X)] <= 3 and nystrom_info.iterations <= 3 and counts[2] >= 20


def test_default_memory_budget_is_half_the_reported_memory(monkeypatch):
    from dnc_jax.solvers import default_memory_budget

    class Device:
        def __init__(self, stats):
            self.stats = stats

        def memory_stats(self):
            return self.stats

    monkeypatch.setattr(jax, "local_devices", lambda: [Device({"bytes_limit": 1001})])
    assert default_memory_budget() == 500 and isinstance(default_memory_budget(), int)
    monkeypatch.setattr(jax, "local_devices", lambda: [Device(None)])
    assert default_memory_budget() == 4 * 2**30


def test_solver_choice_and_option_boundaries(monkeypatch):
    """``choose_solver``'s documented rule at its edges, and each option's boundary value
    accepted while the value past it raises."""
    import dnc_jax.solvers.choice
    from dnc_jax.solvers import AUTO_CHOLESKY_MAX_N, SolverOptions, check_solver_options, choose_solver

    monkeypatch.setattr(dnc_jax.solvers.choice, "available_memory", lambda: None)  # not this host's

    assert AUTO_CHOLESKY_MAX_N == 20_000
    assert choose_solver("auto", 20_000, None, None) == "cholesky"
    assert choose_solver("auto", 20_001, None, None) == "cg"
    assert choose_solver("auto", 100, data_mesh(1), None) == "cholesky"
    assert choose_solver("auto", 100, data_mesh(2), None) == "cg"
    assert choose_solver("auto", 100, None, 10) == "nystrom"
    assert choose_solver("cg", 100, None, None) == "cg"
    for tol, max_iter, rank in ((1e-12, 1, 1), (0.999, 5, 3)):
        check_solver_options(tol, max_iter, rank)
    for bad in ((0.0, 1, 1), (1.0, 1, 1), (5.0, 1, 1), (np.nan, 1, 1), (0.5, 0, 1), (0.5, 1, 0)):
        with pytest.raises(ValueError):
            check_solver_options(*bad)
    SolverOptions(solver="nystrom", centers=1).validate()
    for bad in (dict(centers=0), dict(centers=True), dict(solver="nystrom"), dict(solver="lu")):
        with pytest.raises(ValueError):
            SolverOptions(**bad).validate()
    with pytest.raises(dataclasses.FrozenInstanceError):
        SolverOptions().tol = 0.1  # frozen: hashable, safe as a default argument


def test_auto_rule_and_the_memory_check_of_the_exact_path(monkeypatch, digits):
    """``"auto"`` factors on one device while the exact path's measured peak fits the free
    memory (and, on a CPU, up to 20,000 rows); ``fit_with_agop`` counts the gradient weights
    it shares; an explicit Cholesky that cannot fit raises before building any matrix."""
    import dnc_jax.rfm
    import dnc_jax.solvers.choice as choice
    import dnc_jax.solvers.ridge as ridge
    from dnc_jax.rfm import fit_with_agop
    from dnc_jax.solvers import (
        ACCELERATOR_CHOLESKY_PEAK_MATRICES,
        CHOLESKY_AGOP_PEAK_MATRICES,
        CHOLESKY_PEAK_MATRICES,
        SolverOptions,
        available_memory,
        check_cholesky,
        cholesky_peak_matrices,
        choose_solver,
    )

    class Device:
        def memory_stats(self):
            return {"bytes_limit": 1000, "bytes_in_use": 300}

    with monkeypatch.context() as patch:
        patch.setattr(jax, "local_devices", lambda: [Device()])
        assert available_memory() == 700
    free = available_memory()  # the host's MemAvailable on the CPU backend
    assert isinstance(free, int) and free > 0

    def free_bytes(value):
        monkeypatch.setattr(choice, "available_memory", lambda: value)

    free_bytes(int(CHOLESKY_PEAK_MATRICES * 4 * 1000**2))
    assert choose_solver("auto", 1000, None, None) == "cholesky"
    assert choose_solver("auto", 1001, None, None) == "cg"
    assert choose_solver("auto", 1000, None, None, itemsize=8) == "cg"
    assert choose_solver("auto", 1000, None, None, matrices=CHOLESKY_AGOP_PEAK_MATRICES) == "cg"
    free_bytes(None)  # unknown free memory: the size rule alone
    assert choose_solver("auto", 20_000, None, None) == "cholesky"
    assert choose_solver("auto", 20_001, None, None) == "cg"  # the CPU's time rule
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert choose_solver("auto", 60_000, None, None) == "cholesky"
    # an accelerator counts its own measured peak, for a fit and for the AGOP's shared path
    assert cholesky_peak_matrices() == cholesky_peak_matrices(agop=True) == (
        ACCELERATOR_CHOLESKY_PEAK_MATRICES) > CHOLESKY_PEAK_MATRICES
    free_bytes(int(ACCELERATOR_CHOLESKY_PEAK_MATRICES * 4 * 60_000**2))
    assert choose_solver("auto", 60_000, None, None) == "cholesky"
    assert choose_solver("auto", 60_001, None, None) == "cg"
    free_bytes(int(CHOLESKY_PEAK_MATRICES * 4 * 64_000**2))  # the CPU's peak would allow it
    assert choose_solver("auto", 64_000, None, None) == "cg"
    with pytest.raises(ValueError, match="4.4 n x n matrices"):
        check_cholesky(64_000, 4)
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert cholesky_peak_matrices() == CHOLESKY_PEAK_MATRICES
    assert cholesky_peak_matrices(agop=True) == CHOLESKY_AGOP_PEAK_MATRICES

    X, _, Y = digits  # 402 rows
    n = len(X)
    between = int(0.5 * (CHOLESKY_PEAK_MATRICES + CHOLESKY_AGOP_PEAK_MATRICES) * 4 * n * n)
    free_bytes(between)  # fits a fit, not a fit sharing its gradient weights with the AGOP
    assert fit_kernel_ridge(X, Y, bandwidth=2.0)[1].solver == "cholesky"
    assert fit_with_agop(X, Y, bandwidth=2.0)[2].solver == "cg"
    assert fit_with_agop(X, Y, bandwidth=2.0, agop_samples=n)[2].solver == "cholesky"
    with pytest.raises(ValueError, match="needs about .* GiB .* use solver='cg'"):
        fit_with_agop(X, Y, bandwidth=2.0, solver=SolverOptions(solver="cholesky"))

    def no_work(*args, **kwargs):
        raise AssertionError("the kernel matrix was built before the memory check")

    free_bytes(int(CHOLESKY_PEAK_MATRICES * 4 * n * n) - 1)
    monkeypatch.setattr(ridge, "train_kernel_matrix", no_work)
    monkeypatch.setattr(dnc_jax.rfm, "_train_kernel_and_weights", no_work)
    for fit in (lambda: fit_kernel_ridge(X, Y, bandwidth=2.0, solver="cholesky"),
                lambda: fit_with_agop(X, Y, bandwidth=2.0, solver=SolverOptions("cholesky"))):
        with pytest.raises(ValueError, match=f"at n = {n} needs"):
            fit()
    free_bytes(None)
    check_cholesky(n, 4)  # memory unknown: allowed


def test_blocked_cholesky_equals_lapack_and_takes_over_past_its_size(monkeypatch, digits):
    """The blocked factorisation (LAPACK on diagonal blocks only) solves the same system as
    one LAPACK call, with a block that does not divide ``n``; it flags a failed
    factorisation; past ``LAPACK_CHOLESKY_MAX_N`` rows on a CPU ``solve_psd`` and the exact
    fit run through it."""
    import dnc_jax.solvers.cholesky as cholesky
    from dnc_jax.solvers import solve_psd, train_kernel_matrix

    X, _, Y = digits  # 402 rows
    K = train_kernel_matrix(jnp.asarray(X), None, "laplace", 2.0, None)
    shift = jnp.float32(1e-3)
    direct, ok = cholesky._cholesky_solve(K, jnp.asarray(Y), shift)
    for block in (64, 150, 402, 1000):
        blocked, ok_blocked = cholesky._blocked_cholesky_solve(K, jnp.asarray(Y), shift, block)
        assert bool(ok) and bool(ok_blocked)
        assert _rel(blocked, direct) < 1e-4, block
    indefinite = K - 2.0 * jnp.eye(len(X), dtype=K.dtype)
    assert not bool(cholesky._blocked_cholesky_solve(indefinite, jnp.asarray(Y), shift, 64)[1])

    calls = []

    def spy(K, Y, shift, block):
        calls.append((K.shape[0], block))
        return blocked_solve(K, Y, shift, block)

    blocked_solve = cholesky._blocked_cholesky_solve
    monkeypatch.setattr(cholesky, "_blocked_cholesky_solve", spy)
    monkeypatch.setattr(cholesky, "CHOLESKY_BLOCK", 100)
    monkeypatch.setattr(cholesky, "LAPACK_CHOLESKY_MAX_N", len(X))
    solve_psd(K, jnp.asarray(Y), 1e-3)
    assert calls == []  # at the limit: one LAPACK call
    monkeypatch.setattr(cholesky, "LAPACK_CHOLESKY_MAX_N", len(X) - 1)
    alpha = solve_psd(K, jnp.asarray(Y), 1e-3)
    fit, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, solver="cholesky")
    assert calls == [(len(X), 100)] * 2
    assert _rel(alpha, direct) < 1e-4 and _rel(fit.coefs, direct) < 1e-4


def test_fit_edges_rows_without_a_mesh_and_what_info_reports(digits):
    """Rows carry their mesh when ``mesh`` is omitted; Cholesky runs on a one-device mesh
    and refuses two; one centre and all ``n`` are valid counts; ``SolveInfo`` reports what
    ran, with phase seconds inside the call's wall time; a metric reaches the CG solve."""
    X, _, Y = digits
    mesh = data_mesh("all")
    fit, _ = fit_kernel_ridge(as_rows(X, mesh), as_rows(Y, mesh), bandwidth=2.0, solver="cg",
                              precond_rank=50)
    assert fit.mesh is mesh
    two = data_mesh(2)
    assert fit_kernel_ridge(X, Y, bandwidth=2.0, solver="cg", precond_rank=50,
                            mesh=two)[0].mesh is two
    with pytest.raises(ValueError, match="different mesh"):  # the mesh passed wins, and checks
        fit_kernel_ridge(as_rows(X, mesh), as_rows(Y, mesh), mesh=two, solver="cg")
    with pytest.raises(ValueError, match="Rows"):
        fit_kernel_ridge(as_rows(X, mesh), Y, bandwidth=2.0, solver="cg")
    with pytest.raises(ValueError, match="Rows"):
        fit_kernel_ridge(as_rows(X, mesh), as_rows(Y[:-4], mesh), bandwidth=2.0, solver="cg")
    with pytest.raises(ValueError, match="one device"):
        fit_kernel_ridge(X, Y, bandwidth=2.0, solver="cholesky", mesh=data_mesh(2))
    M = np.diag(np.linspace(0.5, 1.5, X.shape[1])).astype(np.float32)
    fits = {}
    for name, options in (("one-device mesh", dict(solver="cholesky", mesh=data_mesh(1))),
                          ("cg", dict(solver="cg", M=M, precond_rank=100)),
                          ("one centre", dict(centers=1)), ("n centres", dict(centers=len(X))),
                          ("cholesky", dict(solver="cholesky", M=M))):
        start = time.perf_counter()
        fits[name], info = fit_kernel_ridge(X, Y, bandwidth=2.0, **options)
        wall = time.perf_counter() - start
        assert 0 <= info.kernel_seconds <= wall and 0 <= info.solve_seconds <= wall
        if info.solver == "cholesky":
            assert (info.iterations, info.residual, info.rank) == (0, None, None)
    # CG with the metric, off the training points (where any near-interpolating fit gives ~Y)
    Xt = 0.9 * X[:20]
    assert _rel(fits["cg"].predict(Xt), fits["cholesky"].predict(Xt)) <= 1e-4


@pytest.mark.parametrize("solver", ["cg", "nystrom"])
def test_pcg_columns_are_independent_and_scale_free(digits, x64, solver):
    """Each right-hand side runs its own PCG: a zero column gives zero coefficients and
    does not stop the others; a column scaled by 2^-13 gives coefficients scaled alike (the
    residual is relative); the column that converges first stops moving, so it equals its
    own single-column solve; one iteration moves the iterate (the residual leaves 1)."""
    X, _, Y = (a.astype(np.float64) for a in digits)
    options = dict(bandwidth=2.0, reg=1e-3, solver=solver, tol=1e-6, precond_rank=50,
                   centers=100 if solver == "nystrom" else None)
    alone = [fit_kernel_ridge(X, Y[:, c:c + 1], **options) for c in (0, 1)]
    assert alone[0][1].iterations != alone[1][1].iterations  # one converges first
    Y4 = np.concatenate([Y[:, :2], np.zeros((len(X), 1)), 2.0**-13 * Y[:, :1]], axis=1)
    fit, info = fit_kernel_ridge(X, Y4, **options)
    coefs = np.asarray(fit.coefs)
    assert info.iterations == max(a[1].iterations for a in alone)
    np.testing.assert_array_equal(coefs[:, 2], 0.0)
    for c in (0, 1):
        # (rounding of products with 4 columns instead of 1, times Nyström's conditioning)
        assert _rel(coefs[:, c], np.asarray(alone[c][0].coefs)[:, 0]) <= 1e-7
    np.testing.assert_array_equal(coefs[:, 3], 2.0**-13 * coefs[:, 0])
    tiny, _ = fit_kernel_ridge(X, 2.0**-20 * Y4, **options)  # ||b||^2 far below tol
    np.testing.assert_array_equal(np.asarray(tiny.coefs), 2.0**-20 * coefs)
    with pytest.warns(RuntimeWarning, match="unconverged after 1 iterations"):
        _, one = fit_kernel_ridge(X, Y, **{**options, "max_iter": 1})
    assert one.iterations == 1 and abs(one.residual - 1.0) > 1e-3  # the iterate moved


def test_preconditioner_algebra_against_its_formulas(rng):
    """The host-side float64 pieces of both preconditioners against their formulas:
    ``A^(-1/2)`` and Frangella-Tropp-Udell's ``P^-1`` (eq. 5.3) with eigenvalues below
    ``1e-7 * max`` dropped (inputs given slightly asymmetric: only the symmetric part
    counts; one kept eigenvalue lies below 1e-7 itself), Falkon's factors
    ``L R R^T L^T = (n/m) K^2 + reg K``, and the Cholesky jitter ladder."""
    from dnc_jax.solvers.cg import inverse_sqrt_psd, nystrom_correction
    from dnc_jax.solvers.nystrom import cholesky_with_jitter, falkon_factors

    def orthogonal(n, k):
        return np.linalg.qr(rng.standard_normal((n, k)))[0]

    def antisymmetric(n):
        E = rng.standard_normal((n, n))
        return 0.1 * (E - E.T)

    V = orthogonal(5, 5)
    lam = np.array([2e-3, 5e-4, 1e-8, 1e-10, 0.0])  # 1e-10 < 1e-7 * 2e-3: dropped
    A = (V * lam) @ V.T
    kept = lam > 2e-10
    expected = (V[:, kept] / np.sqrt(lam[kept])) @ V[:, kept].T
    np.testing.assert_allclose(inverse_sqrt_psd(A + 1e-3 * antisymmetric(5)), expected,
                               rtol=1e-6, atol=1e-6 * np.abs(expected).max())
    np.testing.assert_array_equal(inverse_sqrt_psd(np.zeros((3, 3))), 0.0)

    n, reg = 30, 1e-3
    U, s = orthogonal(n, 5), np.array([3.0, 1.0, 1e-2, 7e-4, 1e-6]) * 1e-2
    F = U @ np.diag(s) @ orthogonal(5, 5).T  # F^T F: 9e-4, 1e-4, 1e-8, 4.9e-11, 1e-16
    keep = s**2 > 1e-7 * s[0] ** 2
    Uk, lk = U[:, keep], s[keep] ** 2
    P_inv = (lk.min() + reg) * (Uk / (lk + reg)) @ Uk.T + np.eye(n) - Uk @ Uk.T
    gram = F.T @ F
    Q = nystrom_correction(gram + 1e-3 * np.abs(gram).max() * antisymmetric(5), reg)
    np.testing.assert_allclose(np.eye(n) + F @ Q @ F.T, P_inv, atol=1e-9)
    np.testing.assert_array_equal(nystrom_correction(np.zeros((4, 4)), reg), 0.0)

    X = rng.standard_normal((50, 6))
    K = np.exp(-np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1)) / 2.0)
    L, R = falkon_factors(K, 400, reg)
    LR = L @ R
    np.testing.assert_allclose(LR @ LR.T, (400 / 50) * K @ K + reg * K, rtol=1e-9, atol=1e-9)

    steps = (0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3)
    L = cholesky_with_jitter(np.zeros((3, 3)))  # mean diagonal 0: jitter relative to 1
    np.testing.assert_allclose(L @ L.T, 1e-7 * np.eye(3), rtol=1e-12)
    B = rng.standard_normal((10, 3))
    for t in range(len(steps) + 1):
        base = B @ B.T + (np.eye(10) if t == 0 else 0.0)
        s0 = np.mean(np.diag(base))
        delta = {0: 0.0, 1: 0.5 * steps[1]}.get(t, 2.0 * steps[min(t, 6) - 1]) * s0
        M = base - (delta if t < len(steps) else 0.1 * s0) * np.eye(10)
        scale = np.mean(np.diag(M))
        if t == len(steps):
            with pytest.raises(ValueError, match="not positive definite"):
                cholesky_with_jitter(M)
            continue
        L = cholesky_with_jitter(M)
        np.testing.assert_allclose(L @ L.T, M + steps[t] * scale * np.eye(10), rtol=1e-12,
                                   atol=1e-12 * scale)


def test_sharded_diagonal_agop_with_and_without_a_metric(digits, rng):
    X, _, Y = digits
    B = rng.standard_normal((X.shape[1], X.shape[1]))
    M = (B @ B.T / X.shape[1] + 0.5 * np.eye(X.shape[1])).astype(np.float32)  # not diagonal
    mesh = data_mesh("all")
    for metric in (None, M):
        fit, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, M=metric)
        one = kernel_agop(fit, X, diag=True)
        four = kernel_agop(fit, X, diag=True, mesh=mesh)
        assert one.shape == four.shape == (X.shape[1],) and _rel(four, one) <= 1e-5


def test_nystrom_recomputed_rows_and_the_cpu_host_factors(digits, monkeypatch):
    """Sharded over 4 devices with padding rows, Nyström's kernel rows recomputed in every
    product (``memory_budget=0``) give the held rows' fit; on a CPU backend the Falkon
    factors are the host's float64 ones, elsewhere the device's."""
    from dnc_jax.solvers import nystrom

    X, _, Y = digits
    mesh = data_mesh("all")
    held, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, centers=100, mesh=mesh, tol=1e-7)
    recomputed, _ = fit_kernel_ridge(X, Y, bandwidth=2.0, centers=100, mesh=mesh, tol=1e-7,
                                     memory_budget=0, block_size=64)
    # float32 products in another order, times the normal equations' conditioning
    assert _rel(recomputed.predict(X[:40]), held.predict(X[:40])) <= 3e-4

    def refuse(*args, **kwargs):
        raise AssertionError("the other backend's factors")

    monkeypatch.setattr(nystrom, "falkon_factors_on_device", refuse)
    fit_kernel_ridge(X, Y, bandwidth=2.0, centers=50)  # CPU: host factors
    monkeypatch.undo()
    monkeypatch.setattr(nystrom, "falkon_factors", refuse)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    fit_kernel_ridge(X, Y, bandwidth=2.0, centers=50)  # elsewhere: device factors


def test_device_falkon_factors_jitter_ladder(rng, x64):
    """``falkon_factors_on_device`` in float64: ``L L^T = K + eps mean(diag K) I`` with
    ``eps`` = 1e-13, then ten times more while a factor is not finite, and
    ``R R^T = (n/m) L^T L + reg I``; a matrix that needs more than 1e-2 raises (repeated
    ``eps *= 10`` used to reach 0.0099999 and try 0.1 too)."""
    from dnc_jax.solvers.nystrom import falkon_factors_on_device

    B = rng.standard_normal((6, 3))
    base = 4.0 * (B @ B.T)  # rank 3, mean diagonal ~12
    scale = np.mean(np.diag(base))
    for k, delta in ((0, None), (3, 3e-11), (7, 3e-7), (11, 3e-3)):
        K = 4.0 * np.eye(6) + base if delta is None else base - delta * np.mean(np.diag(base)) * np.eye(6)
        scale = np.mean(np.diag(K))
        eps = 1e-13 * 10.0**k
        L, R = (np.asarray(f) for f in falkon_factors_on_device(jnp.asarray(K), 30, 1e-3))
        np.testing.assert_allclose(L @ L.T, K + eps * scale * np.eye(6), rtol=1e-13,
                                   atol=1e-13 * scale)
        np.testing.assert_allclose(R @ R.T, 5.0 * L.T @ L + 1e-3 * np.eye(6), rtol=1e-12,
                                   atol=1e-12 * scale)
    with pytest.raises(ValueError, match="not positive definite"):
        falkon_factors_on_device(jnp.asarray(base - 0.05 * scale * np.eye(6)), 30, 1e-3)
    with pytest.raises(ValueError, match="not positive definite"):  # R's matrix indefinite
        falkon_factors_on_device(jnp.asarray(base + np.eye(6)), 30, -1e3)
    L, _ = falkon_factors_on_device(jnp.zeros((3, 3)), 30, 1e-3)  # jitter relative to 1
    np.testing.assert_allclose(np.asarray(L) @ np.asarray(L).T, 1e-13 * np.eye(3), rtol=1e-12)
