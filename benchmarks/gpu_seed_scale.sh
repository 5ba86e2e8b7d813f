#!/usr/bin/env bash
# The project's stages at seed scale on a bare GPU machine (no network, no pip index, maybe no
# git; torch, transformers, tokenizers, accelerate, peft and sacrebleu installed, not dvc,
# dvclive, pydantic, rouge-score or gradio).
#
#   bash benchmarks/gpu_seed_scale.sh prepare [KIT]        # here: the data kit (docs/data-kit.md; default
#                                                          # ../shared/data) packed into gpu_data/kit.tar.gz;
#                                                          # pydantic, rouge-score and their imports
#                                                          # unpacked into gpu_data/site/
#                                                          # for the GPU's Python (< 50 MiB in all)
#   bash benchmarks/gpu_seed_scale.sh run OUT [ARGS...]    # there: the kit unpacked to a temporary folder,
#                                                          # gpu_data/site on PYTHONPATH, results in OUT/
#
# ARGS go to benchmarks/gpu_seed_scale.py: --commit SHA (there may be no git to ask), --scale tiny,
# --budget SECONDS. PYVER (default 3.12, the GPU image's Python) picks the compiled wheels;
# GPU_DATA (default gpu_data) moves the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${GPU_DATA:-gpu_data}"
case "${1:-}" in
  prepare)
    kit="${2:-../shared/data}"
    rm -rf "$data" && mkdir -p "$data/site"
    tar -C "$kit" -czf "$data/kit.tar.gz" corpus-es instrucciones-es
    wheels="$(mktemp -d)"
    # rouge-score is published as a source archive only: built here (pure Python, any version).
    python3 -m pip wheel --quiet --no-deps --wheel-dir "$wheels" "rouge-score==0.1.2"
    python3 -m pip download --quiet --only-binary=:all: --python-version "${PYVER:-3.12}" --implementation cp \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --dest "$wheels" \
      "pydantic~=2.14" nltk absl-py six
    for wheel in "$wheels"/*.whl; do  # a wheel is a zip of an importable tree: no pip needed there
      python3 -m zipfile -e "$wheel" "$data/site"
    done
    rm -rf "$wheels"
    size=$(du -sm "$data" | cut -f1)
    echo "$data: ${size} MiB"
    [ "$size" -lt 50 ] || { echo "$data is over 50 MiB: it must travel to the GPU machine" >&2; exit 1; }
    ;;
  run)
    out="${2:?usage: gpu_seed_scale.sh run OUT [ARGS...]}"
    shift 2
    kit="$(mktemp -d)"
    trap 'rm -rf "$kit"' EXIT
    tar -C "$kit" -xzf "$data/kit.tar.gz"
    site="$(cd "$data/site" && pwd)"
    PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 \
      python3 benchmarks/gpu_seed_scale.py --data "$kit" --out "$out" "$@"
    ;;
  *)
    sed -n '2,16p' "$0" >&2
    exit 2
    ;;
esac
