"""ConvRFM: patches, the convolutional kernel and its patch AGOP against float64 references
written here (loops and the Laplace kernel's closed-form gradient), and the Deep ConvRFM loop."""

import numpy as np
import pytest
from tolerances import F64

from dnc_jax.conv_rfm import (
    DeepConvRFMConfig,
    conv_kernel,
    deep_conv_rfm,
    fit_conv_kernel,
    image_patches,
    patch_agop,
)


def loop_patches(x, q, padding):
    """Patches by slicing: (n, S, q*q*c), row-major positions, (q1, q2, c) within a patch."""
    if padding == "SAME":
        x = np.pad(x, ((0, 0), (q // 2, q // 2), (q // 2, q // 2), (0, 0)))
    n, H, W, c = x.shape
    out = [x[:, i:i + q, j:j + q, :].reshape(n, -1)
           for i in range(H - q + 1) for j in range(W - q + 1)]
    return np.stack(out, axis=1)


def loop_kernel(P, Q, M, L):
    K = np.zeros((len(P), len(Q)))
    for s in range(P.shape[1]):
        for i in range(len(P)):
            for j in range(len(Q)):
                v = P[i, s] - Q[j, s]
                K[i, j] += np.exp(-np.sqrt(max(v @ M @ v, 0.0)) / L)
    return K / P.shape[1]


def closed_form_agop(P_at, P, alpha, M, L):
    """grad_{p_s} f_c(x) = (1/S) sum_j alpha_jc k'(r) M (p_s - q_js) / r, k' = -exp(-r/L)/L."""
    S, d = P.shape[1], P.shape[2]
    A = np.zeros((d, d))
    for x in P_at:
        for s in range(S):
            V = x[s][None, :] - P[:, s]  # (n, d)
            r = np.sqrt(np.maximum(np.einsum("nd,de,ne->n", V, M, V), 0.0))
            w = np.where(r > 0, -np.exp(-r / L) / L / np.where(r > 0, r, 1.0), 0.0)
            G = (alpha * w[:, None]).T @ (V @ M) / S  # (C, d)
            A += G.T @ G
    return A / len(P_at)


@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_patches_are_the_kernel_order_slices(rng, padding):
    x = rng.normal(size=(3, 5, 6, 2))
    np.testing.assert_array_equal(np.asarray(image_patches(x.astype(np.float32), 3, padding)),
                                  loop_patches(x, 3, padding).astype(np.float32))


def test_kernel_and_patch_agop_equal_the_float64_references(rng, x64):
    x = rng.normal(size=(7, 4, 4, 2))
    x[:, 0, :, :] = 0.0  # equal (blank) patches: distance 0, the zero subgradient
    P = np.asarray(image_patches(x, 3, "VALID"))
    B = rng.normal(size=(18, 18)) / 5
    M = np.eye(18) + B @ B.T
    evals, evecs = np.linalg.eigh(M)
    root = evecs @ np.diag(np.sqrt(evals)) @ evecs.T
    L = 1.5
    np.testing.assert_allclose(np.asarray(conv_kernel(P, P[:3], root, L)),
                               loop_kernel(P, P[:3], M, L), rtol=1e-10)
    Y = rng.normal(size=(7, 3))
    alpha = np.asarray(fit_conv_kernel(P, Y, root, L, 1e-2))
    K = loop_kernel(P, P, M, L)
    np.testing.assert_allclose(alpha, np.linalg.solve(K + 1e-2 * np.eye(7), Y), rtol=1e-8)
    want = closed_form_agop(P[:5], P, alpha, M, L)
    got = np.asarray(patch_agop(P[:5], P, alpha, root, L, chunk=2))  # 5 rows: a padded chunk
    np.testing.assert_allclose(got, want, rtol=0, atol=1e4 * np.finfo(F64).eps * np.abs(want).max())


@pytest.mark.slow
def test_deep_conv_rfm_records_each_fit_and_learns_on_digits():
    from dnc_jax.experiments.common import image_split

    X, y = image_split("digits", "train", 300)
    Xt, yt = image_split("digits", "test", 200)
    config = DeepConvRFMConfig(depth=2, iters=1, width=8, agop_samples=100)
    records = deep_conv_rfm(X, y, Xt, yt, config)
    assert [(r.layer, r.step) for r in records] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(r.train_accuracy == 1.0 for r in records)  # ridge 1e-3 interpolates 300 images
    assert all(r.test_accuracy > 0.85 for r in records)
    assert records[2].nc1 < records[0].nc1  # the learned map collapses the classes


def test_configuration_is_checked():
    with pytest.raises(ValueError, match="padding must be one of"):
        DeepConvRFMConfig(padding="same")
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        DeepConvRFMConfig(bandwidth=0.0)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        DeepConvRFMConfig(depth=0)


@pytest.mark.slow
def test_conv_rfm_command_writes_and_resumes(tmp_path, capsys, monkeypatch):
    from helpers import assert_valid_results

    from dnc_jax.cli import main
    from dnc_jax.experiments import conv_rfm as experiment

    out = str(tmp_path / "conv")
    argv = ["conv-rfm", "--dataset", "digits", "--n", "120", "--n-test", "60", "--depth", "1",
            "--iters", "1", "--agop-samples", "30", "--out", out, "--no-progress"]
    assert main(argv + ["--seeds", "0"]) == 0
    printed = capsys.readouterr().out
    assert "identity" in printed and "AGOP 1" in printed and "1 seeds" in printed
    results = assert_valid_results(tmp_path / "conv" / "results.json")
    assert [s["layer"] for s in results["seeds"][0]["steps"]] == [0, 0]
    calls = []
    real = experiment.deep_conv_rfm
    monkeypatch.setattr(experiment, "deep_conv_rfm",
                        lambda *a: calls.append(a[-1].seed) or real(*a))
    assert main(argv + ["--seeds", "0", "1"]) == 0
    assert calls == [1] and "2 seeds" in capsys.readouterr().out
    assert main(argv[:-3] + ["--bandwidth", "0", "--out", out + "-bad"]) == 2
    assert "bandwidth must be > 0" in capsys.readouterr().err
