#!/usr/bin/env bash
# The exact path's peak on a GPU, in n x n buffers (behind ACCELERATOR_CHOLESKY_PEAK_MATRICES
# in dnc_jax/solvers/__init__.py), and the auto rule at the card's edge: at each n, "auto"
# must either take Cholesky and finish, or take CG; never run out of memory. JAX's default
# memory fraction (75%) is kept. BENCHMARKS.md, "The exact path's memory on a GPU".
#   bash benchmarks/gpu_memory.sh OUTDIR
set -u
out=${1:-benchmarks/results}
. "$(dirname "$0")/_gpu_env.sh"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
cd benchmarks
python3 -c "import jax; print(jax.__version__, jax.devices())" | tee -a "$out/gpu.txt"
run memory 150 cholesky_memory.py --n 20000 40000 --path fit agop
run memory-auto 180 cholesky_memory.py --n 56000 60000 64000 --path auto
exit 0
