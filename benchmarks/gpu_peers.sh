#!/usr/bin/env bash
# Issue 26's same-card comparison, in one call (budget: under 8 minutes of device time):
# dnc_jax's RFM (Cholesky; CG with 5,000 AGOP rows; CG with the adaptive sample) against
# xRFM on the same card and data (benchmarks/scale.py --device cuda: mnist_shifted,
# Laplace L = 10, 2 AGOP iterations), at n = 20,000 and 50,000; then dnc_jax's Nyström
# Deep RFM at n = 1,000,000. Each row reports seconds, test accuracy and peak device memory
# (torch's allocator for xRFM, XLA's for dnc_jax); gpu.txt names the card and versions.
# Needs a JAX with CUDA and PyTorch there; xrfm as a wheel in .whl/ (no network there).
#   bash benchmarks/gpu_peers.sh OUTDIR
# Not in it: the official Deep RFM code (dmbeaglehole/neural_collapse_rfm, deep_rfm.py).
# Run as is it imports the `rfm` and `rff` packages of its time and reads torchvision's
# MNIST/CIFAR files under a hard-coded DATA_PATH; carrying those (and checking that the
# script runs) is left for a session with a device.
set -u
out=${1:-benchmarks/results}
. "$(dirname "$0")/_gpu_env.sh"
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.75
cd benchmarks
python3 -c "import jax, torch, xrfm; print(jax.__version__, jax.devices(), torch.__version__, xrfm.__version__)" | tee -a "$out/gpu.txt"
run scale_peers 330 scale.py --device cuda --sizes 20000 50000 --methods cholesky cg@5000 cg@auto xrfm
run nys1m 120 deep_rfm_scale.py --n 1000000 --depth 3 --centers 5000 --agop-samples 20000 --max-shift 8 --tag gpu-nys1m
cp results/scale-*.json results/*-gpu.json "$out/" 2>/dev/null
exit 0
