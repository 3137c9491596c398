"""The solver choice: the auto rule, the exact path's memory check, option boundaries."""

import dataclasses

import jax
import numpy as np
import pytest

from dnc_jax import data_mesh, fit_kernel_ridge
from dnc_jax.rfm import fit_with_agop


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
def test_bad_solver_arguments_raise(digits_rows, bad, match):
    X, _, Y = digits_rows
    with pytest.raises(ValueError, match=match):
        fit_kernel_ridge(X, Y, bandwidth=2.0, **bad)


def test_default_memory_budget_is_half_the_reported_memory(monkeypatch):
    from dnc_jax.solvers import default_memory_budget

    class Device:
        def __init__(self, stats):
            self.stats = stats

        def memory_stats(self):
            return self.stats

    monkeypatch.setattr(jax, "local_devices", lambda: [Device({"bytes_limit": 1001})])
    assert default_memory_budget() == 500 and isinstance(default_memory_budget(), int)
    # a CPU: half the host's free memory, shared by the local devices; 4 GiB when unknown
    from dnc_jax.solvers import choice

    monkeypatch.setattr(jax, "local_devices", lambda: [Device(None)] * 4)
    monkeypatch.setattr(choice, "available_memory", lambda: 8001)
    assert default_memory_budget() == 1000 and isinstance(default_memory_budget(), int)
    monkeypatch.setattr(choice, "available_memory", lambda: None)
    assert default_memory_budget() == 4 * 2**30


def test_available_memory_reads_the_hosts_memavailable_in_kib(monkeypatch):
    """On a CPU, ``/proc/meminfo``'s ``MemAvailable`` (kB, that is KiB) in bytes; ``None``
    where the file cannot be read; a device that reports no memory in use has its limit free."""
    import io

    from dnc_jax.solvers import available_memory, choice

    class Device:
        def __init__(self, stats):
            self.stats = stats

        def memory_stats(self):
            return self.stats

    monkeypatch.setattr(jax, "local_devices", lambda: [Device(None)])
    meminfo = "MemTotal:       32000000 kB\nMemFree: 1 kB\nMemAvailable:   1234567 kB\n"
    monkeypatch.setattr(choice, "open", lambda *a, **k: io.StringIO(meminfo), raising=False)
    assert available_memory() == 1234567 * 1024

    def unreadable(*args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(choice, "open", unreadable, raising=False)
    assert available_memory() is None
    monkeypatch.setattr(jax, "local_devices", lambda: [Device({"bytes_limit": 1000})])
    assert available_memory() == 1000


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


def test_auto_rule_and_the_memory_check_of_the_exact_path(monkeypatch, digits_rows):
    """``"auto"`` factors on one device while the exact path's measured peak fits the free
    memory (and, on a CPU, up to 20,000 rows); ``fit_with_agop`` counts the gradient weights
    it shares; an explicit Cholesky that cannot fit raises before building any matrix."""
    import dnc_jax.rfm
    import dnc_jax.solvers.choice as choice
    import dnc_jax.solvers.ridge as ridge
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

    X, _, Y = digits_rows  # 402 rows
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
