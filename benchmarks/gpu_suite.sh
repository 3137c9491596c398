#!/usr/bin/env bash
# The GPU figures of BENCHMARKS.md: the benchmarks once on a CUDA machine, in one call
# (the collapse figures came from an earlier call with `run collapse 80 collapse.py`).
# Needs a JAX with CUDA and PyTorch there; mlxtend and xrfm as wheels in .whl/ (no network).
#   bash benchmarks/gpu_suite.sh OUTDIR
set -u
out=${1:-benchmarks/results}
. "$(dirname "$0")/_gpu_env.sh"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
cd benchmarks
python3 -c "import jax, torch; print(jax.__version__, jax.devices(), torch.__version__)" | tee -a "$out/gpu.txt"
run agop 60 agop.py --sizes 10000 20000 --batch 5000 --torch-device cuda
run rfm 70 rfm.py --sizes 10000 20000 --torch-device cuda
run deep_rfm_scale 80 deep_rfm_scale.py --n 20000 --depth 3
run layer_agop 60 layer_agop.py --epochs 20 --torch-device cuda
cp results/*-gpu.json "$out/" 2>/dev/null
exit 0
