#!/usr/bin/env bash
# The benchmarks of docs/performance.md on a GPU, in under 8 minutes on one H100:
#
#     PYTHON=/path/to/python scripts/bench_gpu.sh OUTDIR
#
# The Python must hold JAX with its CUDA plugin (pip install "jax[cuda13]"), and rnnlab's
# dependencies; torch with CUDA, equinox and keras join as peers where installed. Unlike
# scripts/test.sh it creates no .venv (the pinned jax there is the CPU build): rnnlab is imported
# from this checkout. Each stage has a time limit and a failed stage does not stop the others;
# OUTDIR/log.txt holds everything printed, and each stage writes its JSON (and figure) there:
#   env.txt                the GPU, driver and versions
#   (log only)             tests/test_cudnn.py: rnnlab's 2-layer bidirectional LSTM with lengths
#                          equals JAX's cuDNN LSTM (jax.experimental.rnn) for the same weights
#   bench_cells_gpu.json   lstm and gru training steps at the three sizes against Flax, PyTorch
#                          (cuDNN), JAX's cuDNN LSTM and Equinox; --autodiff adds rnnlab's plain
#                          lax.scan autodiff step
#   bench_encoder_gpu.json the translation encoder (bilstm2) against packed nn.LSTM and cuDNN
#   bench_decoding_gpu.json compiled decoding against a Python loop per token and torch on CUDA
#   bench_memory_gpu.json, bench_memory_gpu.png  peak GPU memory and step time against T, remat
set -uo pipefail
OUT="${1:?usage: scripts/bench_gpu.sh OUTDIR}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
ROUNDS="${ROUNDS:-20}"
exec > >(tee -a "$OUT/log.txt") 2>&1

stage() {  # stage NAME SECONDS COMMAND...: run it under a time limit, report how it ended
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  echo "=== $name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@"
  echo "=== $name: exit $? after $((SECONDS - start)) s"
}

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  "$PY" - <<'EOF'
import importlib.metadata as md
import jax
names = ["jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "flax", "optax", "numpy",
         "torch", "equinox", "keras"]
for name in names:
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        pass
print("jax devices", jax.devices(), "backend", jax.default_backend())
try:
    import torch
    print("torch cuda", torch.cuda.is_available(), "cudnn", torch.backends.cudnn.version(),
          "cudnn.allow_tf32", torch.backends.cudnn.allow_tf32,
          "matmul.allow_tf32", torch.backends.cuda.matmul.allow_tf32)
except ImportError:
    print("torch not installed")
EOF
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
if ! "$PY" -c 'import sys, jax; sys.exit(jax.default_backend() != "gpu")' 2>/dev/null; then
  echo "scripts/bench_gpu.sh: JAX in $PY has no GPU backend (install jax[cuda13] or set PYTHON)" >&2
  exit 2
fi

stage cudnn-equality 60 "$PY" -m pytest -q -p no:cacheprovider tests/test_cudnn.py
stage bench-cells 150 "$PY" scripts/bench_cells.py --cells lstm,gru --autodiff --devices 1 \
  --malloc on --rounds "$ROUNDS" --json "$OUT/bench_cells_gpu.json"
stage bench-encoder 60 "$PY" scripts/bench_cells.py --encoder --devices 1 --malloc on \
  --rounds "$ROUNDS" --json "$OUT/bench_encoder_gpu.json"
stage bench-decoding 80 "$PY" scripts/bench_decoding.py --json "$OUT/bench_decoding_gpu.json"
# Each child is a JAX process: without this each one (and the parent) takes 75% of the card.
XLA_PYTHON_CLIENT_PREALLOCATE=false stage bench-memory 80 "$PY" scripts/bench_memory.py \
  --lengths 1000,10000 --json "$OUT/bench_memory_gpu.json" --plot "$OUT/bench_memory_gpu.png"
