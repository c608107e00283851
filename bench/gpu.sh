#!/usr/bin/env bash
# The prepared GPU measurements (bench/gpu_bench.py): ViT-B/16 cache job at bf16/fp16 and batch 256/512, a resume
# on CUDA, each recipe's training step with mixed precision; appended to docs/benchmarks.md with the device name.
# About 3-5 minutes on one H100/H200.
#
#   bench/gpu.sh [--dry-run] [--out FILE] [--device cuda:N]
#
# --dry-run: CPU, tiny sizes (the test suite runs it). A machine without open_clip/zarr/... installs them first
# from wheels carried in .whl/ (no index is reached): pip download -d .whl open_clip_torch zarr h5py ... beforehand.
# On a lent device machine whose files come back only from $OUT: bench/gpu.sh --out "$OUT/gpu.md", then append it
# to docs/benchmarks.md here.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
if [ -d .whl ] && compgen -G ".whl/*.whl" > /dev/null; then
    "$PYTHON" -m pip install --quiet --no-index --find-links .whl/ .whl/*.whl
fi
export PYTHONPATH="$PWD:$PWD/bench${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" bench/gpu_bench.py "$@"
