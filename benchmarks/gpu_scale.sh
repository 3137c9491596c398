#!/usr/bin/env bash
# Issue 9's GPU figures in one call: Deep RFM at n = 50,000 (exact: Cholesky, then CG) and
# at n = 1,000,000 (Nyström, 5,000 centres, AGOP from 20,000 rows), seconds per phase and
# FLOP/s against the card's measured float32 (HIGHEST) matmul rate.
#   bash benchmarks/gpu_scale.sh OUTDIR
set -u
out=${1:-benchmarks/results}
. "$(dirname "$0")/_gpu_env.sh"
# autotuning off: on the H100 it made compilation, not the products, dominate (BENCHMARKS.md)
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.92 XLA_FLAGS=--xla_gpu_autotune_level=0
cd benchmarks
python3 -c "import jax; print(jax.__version__, jax.devices())" | tee -a "$out/gpu.txt"
run() { local name=$1 limit=$2; shift 2
  echo "== $name: $*"; timeout "$limit" python3 "$@" 2>&1 | grep -v Warning | tee "$out/$name.log"; }
run exact50k 150 deep_rfm_scale.py --n 50000 --depth 3 --solver cholesky --tag gpu-chol50k
run cg50k 120 deep_rfm_scale.py --n 50000 --depth 3 --solver cg --agop-samples 20000 --tag gpu-cg50k
run nys1m 180 deep_rfm_scale.py --n 1000000 --depth 3 --centers 5000 --agop-samples 20000 --max-shift 8 --tag gpu-nys1m
cp results/*gpu*.json "$out/" 2>/dev/null
exit 0
