"""Each hardened test against the bug it exists for: put the bug into the source
by hand, run the test, expect it to fail; then restore the source.

    python tests/hand_mutations.py [--only NAME ...]

Not part of the test suite (the file name does not start with ``test_``): a periodic check,
about ten minutes on two cores, whose last result ``TESTING.md`` records. It edits the
working tree in place and restores every file in a ``finally``; run it on a clean tree.
Exit status 1 if any bug survives its test or a test fails on the unmodified source.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent

# (name, file, original text, buggy text, test node id, the bug in words)
MUTATIONS = [
    ("collapse-offset", "dnc_jax/collapse.py",
     "        ref_row = jnp.asarray(np.asarray(H[:1]), dtype=dtype)",
     "        ref_row = jnp.zeros_like(jnp.asarray(np.asarray(H[:1]), dtype=dtype))",
     "tests/test_collapse.py::test_float32_large_offset_nc1_pinv",
     "no shift by the first row: float32 sums lose a large common offset's precision"),
    ("pearson-uncentred", "dnc_jax/nets/analysis.py",
     "    a, b = a - a.mean(), b - b.mean()\n", "",
     "tests/nets/test_analysis.py::test_nfa_on_balanced_deep_linear_network",
     "the NFA correlation as an uncentred cosine"),
    ("mlp-last-activation", "dnc_jax/nets/mlp.py",
     "        if i < len(layers) - 1:\n            h = act(h)",
     "        if i < len(layers) - 2:\n            h = act(h)",
     "tests/nets/test_mlp.py::test_mlp_shape_and_bias_layout",
     "the forward pass skips the last hidden layer's activation"),
    ("cosine-scale", "dnc_jax/deep_rfm_model.py",
     "jnp.sqrt(2.0 / W.shape[0])", "jnp.sqrt(1.0 / W.shape[0])",
     "tests/test_deep_rfm_model.py::test_deep_rfm_layer_rebuilt_by_hand",
     "random Fourier features scaled by sqrt(1/D) instead of sqrt(2/D)"),
    ("unit-rows", "dnc_jax/deep_rfm_model.py",
     "    return X / jnp.where(norms > 0, norms, 1.0)", "    return X",
     "tests/test_deep_rfm_model.py::test_deep_rfm_layer_rebuilt_by_hand",
     "Deep RFM layers skip the unit-norm rows of the official code"),
    ("matrix-power-cutoff", "dnc_jax/gradient_outer_product.py",
     "    positive = evals > cutoff", "    positive = evals > 0.0",
     "tests/test_gradient_outer_product.py::test_negative_matrix_power_is_the_pseudo_inverse_power",
     "a negative power of round-off eigenvalues (the bug issue 13's tests found)"),
    ("modular-inverse", "dnc_jax/data/synthetic.py",
     "pow(int(v), p - 2, p)", "pow(int(v), p - 1, p)",
     "tests/data/test_synthetic.py::test_modular_division_against_known_inverses",
     "division by b^(p-1) = 1 instead of b's inverse"),
    ("balanced-quota", "dnc_jax/data/preparation.py",
     "    quota[: n % len(classes)] += 1\n", "",
     "tests/data/test_preparation.py::test_prepare_balanced_subsample",
     "a balanced subsample short of n when C does not divide it"),
    ("float64-rebuild", "dnc_jax/solvers/cholesky.py",
     "    with jax.enable_x64(kernel64 is not None):", "    with jax.enable_x64(False):",
     "tests/solvers/test_cholesky.py::test_solve_psd_rebuilds_in_float64_and_solves_to_its_precision",
     "no float64 rebuild of an indefinite float32 kernel matrix"),
    ("shared-pass-mean", "dnc_jax/nets/layer_agop.py",
     "S_l), W) / n for", "S_l), W) / (n - 1) for",
     "tests/nets/test_layer_agop.py::test_shared_pass_equals_per_layer_autodiff",
     "layer AGOPs averaged over n - 1 samples"),
    ("near-pairs-off", "dnc_jax/kernels.py",
     "NEAR_PAIRS = 8", "NEAR_PAIRS = 0",
     "tests/kernels/test_distances.py::test_points_1e3_apart_keep_their_gradient_in_float32",
     "near distances left to the float32 expansion ||x||^2 + ||z||^2 - 2 x.z"),
    ("last-batch-dropped", "dnc_jax/nets/train.py",
     "    if keep_last and n % batch_size:\n        carry, last = step(",
     "    if False:\n        carry, last = step(",
     "tests/nets/test_train.py::test_last_partial_batch_is_a_step_when_kept",
     "the partial batch never stepped although last_batch='keep'"),
    ("adam-decay-dropped", "dnc_jax/nets/train.py",
     "    return optax.chain(optax.add_decayed_weights(weight_decay), step)",
     "    return step",
     "tests/nets/test_train.py::test_optimizers_follow_pytorchs_weight_decay",
     "Adam and SGD ignore the weight decay"),
    ("agop-projection-power", "dnc_jax/nets/analysis.py",
     "    return evecs * np.sqrt(evals)",
     "    return evecs * evals",
     "tests/nets/test_analysis.py::test_agop_projection_is_the_agop_square_root_up_to_rotation",
     "the AGOP projection by S_a^2 (the AGOP) instead of S_a"),
    ("falkon-ratio", "dnc_jax/solvers/nystrom.py",
     "    R = jnp.linalg.cholesky(ratio * LtL", "    R = jnp.linalg.cholesky(LtL",
     "tests/solvers/test_nystrom.py::test_device_preconditioner_gives_the_same_fit",
     "the device preconditioner without its n/m factor"),
    ("adaptive-pool-floor", "dnc_jax/nets/backbones.py",
     "-(-(i + 1) * length // s)", "(i + 1) * length // s",
     "tests/nets/test_backbones.py::test_adaptive_avg_pool_is_pytorchs",
     "adaptive pooling bins end at floor instead of ceil"),
    ("gpu-flag-overrides-user", "dnc_jax/compilation.py",
     "if flag.split(\"=\")[0] not in given]", "]",
     "tests/test_cli.py::test_gpu_flags_added_once_and_never_over_the_users",
     "the Triton flag appended over the user's own XLA_FLAGS value"),
]


def run_test(node: str) -> tuple[bool, float]:
    tic = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           node], cwd=ROOT, capture_output=True, text=True)
    return proc.returncode == 0, time.perf_counter() - tic


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="+", default=None)
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if args.only is None or m[0] in args.only]
    failed = 0
    print(f"{'bug':<24} {'test':<78} {'clean':>6} {'buggy':>7} {'s':>6}")
    for name, path, old, new, node, _ in chosen:
        file = ROOT / path
        source = file.read_text()
        if source.count(old) != 1:
            print(f"{name:<24} the original text occurs {source.count(old)} times in {path}")
            failed += 1
            continue
        clean, t_clean = run_test(node)
        try:
            file.write_text(source.replace(old, new))
            passed_buggy, t_buggy = run_test(node)
        finally:
            file.write_text(source)
        ok = clean and not passed_buggy
        failed += not ok
        print(f"{name:<24} {node.split('tests/')[1]:<78} {'pass' if clean else 'FAIL':>6} "
              f"{'caught' if not passed_buggy else 'MISSED':>7} {t_clean + t_buggy:>6.0f}",
              flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
