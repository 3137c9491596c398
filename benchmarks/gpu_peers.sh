#!/usr/bin/env bash
# Issue 26's same-card comparison, in one call (budget: under 8 minutes of device time):
#  1. dnc_jax's RFM (CG with 5,000 AGOP rows) against xRFM on
#     the same card and data (benchmarks/scale.py --device cuda: mnist_shifted, Laplace
#     L = 10, 2 AGOP iterations), at n = 20,000 and 50,000: seconds, test accuracy, peak
#     device memory (torch's allocator for xRFM, XLA's for dnc_jax);
#  2. the official Deep RFM code, run as is (dmbeaglehole/neural_collapse_rfm deep_rfm.py at
#     eee0604 with aradha/recursive_feature_machines' rfm package at 52c7801, the version
#     the preset `official` cites), against `dnc-jax deep-rfm --preset official`, on the
#     same first n images of mnist_shifted (written as torchvision's MNIST files by
#     benchmarks/official_data.py), n = 20,000 and 50,000, depth 2: seconds per layer
#     (the official script's from the time its "Depth k" lines print) and NC1 per layer in
#     its convention (its saved base/right/left lists against our input/projection/output);
#  3. dnc_jax's Nyström Deep RFM at n = 1,000,000.
# gpu.txt names the card and the versions. Prepare here, once (ignored folders, carried):
#   python benchmarks/official_data.py --n 50000 --out .official/data
#   mkdir -p .official/neural_collapse_rfm .official/rfm_pkg
#   git -C MIRROR_OF_neural_collapse_rfm archive eee0604 | tar -x -C .official/neural_collapse_rfm
#   git -C MIRROR_OF_recursive_feature_machines archive 52c7801 rfm | tar -x -C .official/rfm_pkg
#   wheels in .whl/: xrfm 0.4.5, hickle, random-fourier-features-pytorch (the official
#   script imports `rff`), as the device README says
# and run with carry [".whl", ".official"]:  bash benchmarks/gpu_peers.sh OUTDIR
set -u
out=${1:-benchmarks/results}
root=$PWD
. "$(dirname "$0")/_gpu_env.sh"
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.75
python3 -c "import jax, torch, xrfm; print(jax.__version__, jax.devices(), torch.__version__, xrfm.__version__)" | tee -a "$out/gpu.txt"
# the official script sets DATA_PATH=/scratch/bbjr/dbeaglehole/ itself (deep_rfm.py line 45)
raw=/scratch/bbjr/dbeaglehole/MNIST/MNIST/raw
mkdir -p "$raw" && for f in .official/data/*.gz; do gunzip -c "$f" > "$raw/$(basename "$f" .gz)"; done
stamp() { python3 -u -c "import sys,time
for line in sys.stdin: print(f'{time.time():.2f} {line}', end='', flush=True)"; }
for n in 20000 50000; do
  work=/tmp/official-$n && rm -rf "$work" && cp -r .official/neural_collapse_rfm "$work" && mkdir -p "$work/results"
  echo "== official deep_rfm.py -n $n -depth 2"
  (cd "$work" && PYTHONPATH="$root/.official/rfm_pkg:$PYTHONPATH" timeout 60 python3 -u deep_rfm.py \
     -n $n -dataset mnist -depth 2 2>&1 | stamp | grep -v Warning | tee "$out/official-$n.log")
  python3 -c "import glob,torch
for f in sorted(glob.glob('$work/results/*/*nc1_seed_0.pt')): print(f.split('/')[-1], torch.load(f))" | tee -a "$out/official-$n.log"
  echo "== dnc-jax deep-rfm --preset official --n $n --depth 2"
  timeout 50 python3 -m dnc_jax.cli deep-rfm --preset official --dataset mnist_shifted --n $n \
    --depth 2 --out "/tmp/ours-$n" --no-progress 2>&1 | grep -v Warning | tee "$out/ours-official-$n.log"
done
cd benchmarks
run scale_peers 140 scale.py --device cuda --sizes 20000 50000 --methods cg@5000 xrfm
run nys1m 70 deep_rfm_scale.py --n 1000000 --depth 3 --centers 5000 --agop-samples 20000 --max-shift 8 --tag gpu-nys1m
cp results/scale-*.json results/*-gpu.json "$out/" 2>/dev/null
exit 0
