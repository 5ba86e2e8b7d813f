#!/usr/bin/env bash
# The seed-scale benchmark on a bare GPU machine (no network; torch, transformers, tokenizers,
# accelerate and peft installed, not dvc or pydantic).
#
#   bash benchmarks/gpu_seed_scale.sh prepare [KIT]   # here: copy the kit (default ../shared/data) and
#                                                     # the wheels the GPU image lacks into gpu_data/ (< 64 MiB)
#   bash benchmarks/gpu_seed_scale.sh run OUT         # there: install those wheels offline, run, write OUT/
#
# PYVER (default 3.11) must be the GPU machine's Python for the compiled pydantic-core wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  prepare)
    kit="${2:-../shared/data}"
    rm -rf gpu_data && mkdir -p gpu_data/corpus-es gpu_data/instrucciones-es gpu_data/wheels
    cp "$kit"/corpus-es/*.txt gpu_data/corpus-es/
    cp "$kit"/instrucciones-es/*.jsonl gpu_data/instrucciones-es/
    python -m pip download --quiet --only-binary=:all: --python-version "${PYVER:-3.11}" \
      --platform manylinux2014_x86_64 --dest gpu_data/wheels "pydantic~=2.14"
    du -sh gpu_data
    ;;
  run)
    out="${2:?usage: gpu_seed_scale.sh run OUT}"
    python -c "import pydantic" 2>/dev/null || python -m pip install --quiet --no-index --find-links gpu_data/wheels pydantic
    python benchmarks/gpu_seed_scale.py --data gpu_data --out "$out" --scale seed
    ;;
  *)
    sed -n '2,9p' "$0" >&2
    exit 2
    ;;
esac
