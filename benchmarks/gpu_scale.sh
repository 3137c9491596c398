#!/usr/bin/env bash
# Issue 9's GPU figures in one call: Deep RFM at n = 50,000 (exact, Cholesky) and at
# n = 1,000,000 (Nyström, 5,000 centres, AGOP from 20,000 rows), seconds per phase and
# FLOP/s against the card's measured float32 (HIGHEST) matmul rate.
#   bash benchmarks/gpu_scale.sh OUTDIR [all|solvers]
# XLA's GPU autotuner tries Triton tilings for every matmul shape of every compiled
# program; that, not the products, made the first layer slow (BENCHMARKS.md). Here Triton
# GEMMs are off (cuBLAS is still autotuned, and it is the fast path for float32) and
# compiled programs persist in a cache, so a second run skips compilation.
set -u
out=${1:-benchmarks/results}
. "$(dirname "$0")/_gpu_env.sh"
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.92 JAX_COMPILATION_CACHE_DIR=/tmp/jax-cache
flags=--xla_gpu_enable_triton_gemm=false
if XLA_FLAGS=$flags python3 -c "import jax.numpy as j; (j.ones(4) @ j.ones(4)).block_until_ready()"; then
  export XLA_FLAGS=$flags
else
  echo "XLA rejected $flags; running with XLA's defaults"
fi
echo "XLA_FLAGS=${XLA_FLAGS:-} JAX_COMPILATION_CACHE_DIR=$JAX_COMPILATION_CACHE_DIR" | tee -a "$out/gpu.txt"
cd benchmarks
python3 -c "import jax; print(jax.__version__, jax.devices())" | tee -a "$out/gpu.txt"
case "${2:-all}" in
all)
  run probe 60 gpu_precision_probe.py
  run chol50k 150 deep_rfm_scale.py --n 50000 --depth 4 --solver cholesky --tag gpu-chol50k
  run chol50k-cached 70 deep_rfm_scale.py --n 50000 --depth 2 --solver cholesky --tag gpu-chol50k-cached
  run nys1m 170 deep_rfm_scale.py --n 1000000 --depth 3 --centers 5000 --agop-samples 20000 --max-shift 8 --tag gpu-nys1m
  tags="chol50k chol50k-cached nys1m"
  ;;
solvers)  # after the Falkon factors moved onto the device; CG at n = 50,000
  run nys1m-device 170 deep_rfm_scale.py --n 1000000 --depth 4 --centers 5000 --agop-samples 20000 --max-shift 8 --tag gpu-nys1m-device
  run cg50k 150 deep_rfm_scale.py --n 50000 --depth 3 --solver cg --agop-samples 20000 --tag gpu-cg50k
  tags="nys1m-device cg50k"
  ;;
esac
for tag in $tags; do cp "results/deep_rfm_scale-gpu-$tag-gpu.json" "$out/" 2>/dev/null; done
exit 0
