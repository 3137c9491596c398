# Sourced by the GPU scripts: wheels carried in .whl/ (no network there), PYTHONPATH, the
# output folder $out, the card's name in $out/gpu.txt, and run NAME LIMIT SCRIPT ARGS...
# (a Python script under a time limit, its output kept in $out/NAME.log).
mkdir -p "$out" && out=$(cd "$out" && pwd)  # absolute: the scripts cd into benchmarks/
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
run() { local name=$1 limit=$2; shift 2
  echo "== $name ($limit s): $*"; timeout "$limit" python3 "$@" 2>&1 | grep -v Warning | tee "$out/$name.log"; }
