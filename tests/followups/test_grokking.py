"""Grokking modular arithmetic with RFM."""

import json

import jax
import numpy as np
import pytest
import scipy.linalg
from helpers import without_time
from tolerances import F64, ROUNDING

from dnc_jax.data import modular_arithmetic
from dnc_jax.experiments import GrokkingRun, run_grokking
from dnc_jax.followups import (
    GrokkingConfig,
    alignment,
    block_deviations,
    circulant_deviation,
    discrete_log_order,
    grokking_rfm,
    primitive_root,
)
from dnc_jax.followups.grokking import circulant_projection


def test_circulant_deviation_zero_exactly_for_circulant(rng):
    C = scipy.linalg.circulant(rng.standard_normal(9))
    assert circulant_deviation(C) < 1e-28
    np.testing.assert_allclose(circulant_projection(C), C, atol=1e-14)
    A = rng.standard_normal((9, 9))
    dev = circulant_deviation(A)
    assert 0.5 < dev <= 1.0  # a random matrix is mostly off-circulant
    # a small perturbation gives a small deviation; the projection is idempotent
    assert 0 < circulant_deviation(C + 1e-3 * A) < 1e-5
    P = circulant_projection(A)
    np.testing.assert_allclose(circulant_projection(P), P, atol=1e-14)
    with pytest.raises(ValueError, match="square"):
        circulant_deviation(np.ones((2, 3)))


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
def test_block_deviations_of_an_ideal_metric(rng, op):
    p = 7
    idx = discrete_log_order(p) if op in ("*", "/") else np.arange(p)
    n = len(idx)
    blocks = [scipy.linalg.circulant(rng.standard_normal(n)) for _ in range(3)]
    ab = blocks[2][:, ::-1] if op in ("-", "/") else blocks[2]
    M = rng.standard_normal((2 * p, 2 * p))  # entries off the reordered residues: anything
    M[np.ix_(idx, idx)] = blocks[0]
    M[np.ix_(p + idx, p + idx)] = blocks[1]
    M[np.ix_(idx, p + idx)] = ab
    devs = block_deviations(M, p, op)
    assert max(devs.values()) < 1e-28
    assert min(block_deviations(rng.standard_normal((2 * p, 2 * p)), p, op).values()) > 0.3


def test_discrete_log_order_makes_multiplication_circulant():
    for p in (5, 7, 13, 61):
        g = primitive_root(p)
        order = discrete_log_order(p)
        assert sorted(order.tolist()) == list(range(1, p))  # a permutation of 1..p-1
        assert {pow(g, k, p) for k in range(1, p)} == set(range(1, p))
        log = np.empty(p, dtype=np.int64)
        log[order] = np.arange(p - 1)
        table = (order[:, None] * order[None, :]) % p  # a * b in discrete-log order
        # log(a b) = log a + log b mod p-1: constant along wrapped anti-diagonals, so the
        # table with its columns reversed is circulant; a / b is circulant as it stands
        assert circulant_deviation(log[table][:, ::-1].astype(float) + 1) < 1e-28
        div = (order[:, None] * np.array([pow(int(b), p - 2, p) for b in order])[None, :]) % p
        assert circulant_deviation(log[div].astype(float) + 1) < 1e-28
        # in the natural order neither is
        natural = np.arange(1, p)
        assert circulant_deviation(((natural[:, None] * natural[None, :]) % p)[:, ::-1]) > 0.01
    assert primitive_root(7) == 3 and primitive_root(13) == 2
    with pytest.raises(ValueError, match="prime"):
        discrete_log_order(12)


def test_alignment():
    A = np.arange(9.0).reshape(3, 3)
    assert alignment(A, 3 * A) == pytest.approx(1.0)
    assert alignment(A, -A) == pytest.approx(-1.0)
    assert alignment(np.eye(2), np.array([[0.0, 1.0], [1.0, 0.0]])) == 0.0


def _reference_grokking_metrics(X, Y, iters, L=2.5, kernel="gaussian"):
    """An independent float64 numpy implementation of the published update: the kernel in
    metric M (rfm-grokking's models/gaussian_kernel.py, laplace_kernel.py,
    quadratic_kernel.py), ridge-free solve, per-sample gradients by an explicit difference
    tensor, centred, AGOP, M <- sqrtm(AGOP) (scipy, as the official code)."""
    M = np.eye(X.shape[1])
    metrics = []
    for _ in range(iters):
        diff = X[:, None, :] - X[None, :, :]  # (n, n, d): x_i - x_j
        d2 = np.einsum("ijd,de,ije->ij", diff, M, diff)
        if kernel == "gaussian":
            K = np.exp(-d2 / (2 * L**2))
            # grad_x f_c(x_i) = sum_j alpha_jc K_ij M (x_j - x_i) / L^2
            weights = K / L**2
        elif kernel == "laplace":
            r = np.sqrt(np.maximum(d2, 0.0))
            K = np.exp(-r / L)
            # grad_x exp(-r/L) = K M (x_j - x_i) / (L r), 0 at r = 0
            weights = np.where(r > 0, K / (L * np.where(r > 0, r, 1.0)), 0.0)
        if kernel == "quadratic":
            dots = X @ M @ X.T
            K = 3 * dots**2
            alpha = np.linalg.solve(K, Y)
            # grad_x 3 (x^T M z_j)^2 = 6 (x^T M z_j) M z_j
            G = np.einsum("ij,jc,jd->icd", 6 * dots, alpha, X) @ M
        else:
            alpha = np.linalg.solve(K, Y)
            G = np.einsum("ij,jc,ijd->icd", weights, alpha, -diff) @ M
        G = G - G.mean(axis=0)
        A = np.einsum("icd,ice->de", G, G) / X.shape[0]
        M = np.real(scipy.linalg.sqrtm(A))
        metrics.append(M)
    return metrics


@pytest.mark.parametrize("kernel", ["gaussian", "laplace", "quadratic"])
def test_grokking_equals_independent_reference(kernel):
    config = GrokkingConfig(p=7, train_fraction=0.7, iters=3, kernel=kernel)
    X, y, _, _ = modular_arithmetic(7, "+", 0.7, 0)
    ref = _reference_grokking_metrics(X.astype(np.float64), np.eye(7)[y], 3, kernel=kernel)
    with jax.enable_x64(True):
        _, metrics = grokking_rfm(config)
    for ours, theirs in zip(metrics, ref, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-8 * np.abs(theirs).max())


def _relu_ntk(U, V):
    """The depth-1 bias-free ReLU NTK (weight variance 2, inputs scaled by 1/d), written as
    ``(sqrt(s_uu s_vv - s_uv^2) + 2 (pi - t) s_uv) / pi`` with ``s_uv = 2 u.v / d`` and
    ``t = arccos(s_uv / sqrt(s_uu s_vv))``: the closed form of the arc-cosine recursion
    (Cho & Saul 2009), not the library's ``sin``/``cos`` form."""
    d = U.shape[1]
    suv = 2 * U @ V.T / d
    suu, svv = 2 * np.sum(U * U, 1) / d, 2 * np.sum(V * V, 1) / d
    norm2 = suu[:, None] * svv[None, :]
    t = np.arccos(np.clip(suv / np.sqrt(norm2), -1.0, 1.0))
    return (np.sqrt(np.maximum(norm2 - suv**2, 0.0)) + 2 * (np.pi - t) * suv) / np.pi


@pytest.mark.slow
def test_relu_ntk_grokking_step_equals_finite_differences(x64, rng):
    """The AGOP a grokking step takes with ``kernel="relu_ntk"``, at the identity metric and
    at a random one, against central differences of an independent numpy predictor. The
    NTK has a cusp where ``x T`` is parallel to a training point's (its ``pi - t`` term is
    ``|x_perp|``-like at ``x = x_i``): central differences average the two sides, as the
    library's clipped ``arccos`` does, and leave an ``O(h)`` error from the cusp's
    curvature; rounding adds ``eps |f| / h``, large here because the interpolating solve's
    coefficients are (measured at the identity metric: relative error 6e-8 at h = 1e-4,
    7e-7 at 1e-5, 4e-5 at 1e-6). Hence h = 1e-4 and a relative tolerance of 1e-6."""
    from dnc_jax.rfm import fit_with_agop
    from dnc_jax.solvers import SolverOptions

    X, y, _, _ = modular_arithmetic(7, "+", 0.7, 0)
    X, Y = X.astype(np.float64), np.eye(7)[y]
    B = rng.standard_normal((14, 14))
    for M in (np.eye(14), B @ B.T / 14 + 0.1 * np.eye(14)):
        T = np.real(scipy.linalg.sqrtm(M))
        Z = X @ T
        alpha = np.linalg.solve(_relu_ntk(Z, Z), Y)
        h = 1e-4
        G = np.stack([(_relu_ntk((X + h * e) @ T, Z) - _relu_ntk((X - h * e) @ T, Z)) @ alpha / (2 * h)
                      for e in np.eye(14)], axis=-1)  # (n, classes, d): d f_c / d x
        G = G - G.mean(axis=0)
        reference = np.einsum("icd,ice->de", G, G) / len(X)
        _, A, _ = fit_with_agop(jax.numpy.asarray(Z), Y, kernel="relu_ntk", bandwidth=1.0, reg=0.0,
                                transform=jax.numpy.asarray(T), centered=True,
                                solver=SolverOptions("cholesky"))
        np.testing.assert_allclose(np.asarray(A), reference, rtol=0,
                                   atol=1e-6 * np.abs(reference).max())


def test_grokking_p13_generalises_after_iterations():
    """Published settings at p = 13 with 70% of the pairs: measured test accuracy 0 at
    iteration 0 and 0.961 from iteration 35 (0.686 at 10), train accuracy 1 throughout;
    the a-b block's circulant deviation falls from 0.69 to 0.02."""
    with jax.enable_x64(True):
        records, _ = grokking_rfm(GrokkingConfig(p=13, train_fraction=0.7, iters=40))
    assert records[0].test_accuracy == 0.0
    assert records[-1].test_accuracy >= 0.9
    assert all(r.train_accuracy == 1.0 for r in records)
    assert records[0].circulant_deviation > 0.5 > 0.05 > records[-1].circulant_deviation
    assert records[-1].alignment == pytest.approx(1.0)


def test_grokking_needs_x64_and_a_prime():
    with jax.enable_x64(False), pytest.raises(ValueError, match="float64"):
        grokking_rfm(GrokkingConfig(p=5, iters=1))
    for bad, match in [({"p": 12}, "prime"), ({"op": "^"}, "op"), ({"iters": 0}, "iters"),
                       ({"train_fraction": 1.0}, "train_fraction"), ({"reg": -1.0}, "reg")]:
        with pytest.raises(ValueError, match=match):
            GrokkingConfig(**bad).validate()


def test_grokking_resume_equals_uninterrupted(tmp_path):
    config = GrokkingConfig(p=7, train_fraction=0.6, iters=5)
    with jax.enable_x64(True):
        full = run_grokking(str(tmp_path / "full"), config=config, progress=False)
        run_grokking(str(tmp_path / "part"), config=config, progress=False, stop_after=2)
        part = run_grokking(str(tmp_path / "part"), config=config, progress=False)
    strip = [without_time(r) for r in full.iterations]
    assert [without_time(r) for r in part.iterations] == strip
    assert part.summary == full.summary and full.summary is not None
    assert all(r.alignment is not None for r in part.iterations)
    # results.json is the run's JSON form, and reads back to the same records
    saved = json.loads((tmp_path / "part" / "results.json").read_text())
    assert saved == json.loads(json.dumps(part.to_json()))
    assert GrokkingRun.from_json(saved) == part
    assert "first_iter_test_acc_over_0.5" in saved["summary"]


def test_per_class_agops_sum_to_the_agop_the_run_takes(x64):
    """The per-class AGOPs of iteration 0's machine sum to the AGOP the run takes (whose
    power ``metric_power`` is the next metric; p = 7, centred gradients)."""
    import jax.numpy as jnp

    from dnc_jax.followups import per_class_agops
    from dnc_jax.followups.grokking import grokking_data, grokking_steps
    from dnc_jax.gradient_outer_product import power_from_eigh, psd_eigh
    from dnc_jax.rfm import fit_with_agop
    from dnc_jax.solvers import SolverOptions

    config = GrokkingConfig(p=7, train_fraction=0.6, iters=1)
    per = per_class_agops(config)
    assert per.shape == (7, 14, 14)
    assert all(np.linalg.eigvalsh(A).min() > -1e-12 * np.abs(A).max() for A in per)  # PSD
    X, Y, *_ = grokking_data(config)
    _, A_step, _ = fit_with_agop(jnp.asarray(X), Y, kernel="gaussian", bandwidth=config.bandwidth,
                                 reg=config.reg, transform=jnp.eye(14), centered=True,
                                 solver=SolverOptions("cholesky"))
    (_, M_next), = list(grokking_steps(config))
    # A_step is the run's AGOP: the same computation gives its next metric to the bit
    np.testing.assert_array_equal(power_from_eigh(*psd_eigh(A_step), config.metric_power), M_next)
    # summed per class in another order: float64 rounding of ~200 terms
    np.testing.assert_allclose(per.sum(axis=0), A_step, rtol=1e-10,
                               atol=ROUNDING[F64] * np.abs(A_step).max())
