"""Every path the pipeline reads or writes, relative to the repository root. Stage scripts, the
chat and the command line take their paths from here; dvc.yaml declares them as deps and
outs, and tests/test_dvc_yaml.py checks that each stage declares every path its script uses.
"""

from __future__ import annotations

from pathlib import Path

# Inputs
RAW_DATA = Path("data/raw")
CORPUS = Path("data/corpus")
EVAL_SETS = Path("data/eval")
REFERENCE_TOKENIZERS = Path("data/tokenizers")

# Stage outputs, in pipeline order
PROCESSED_DATA = Path("data/processed")
DATA_METRICS = Path("metrics/data.json")

TOKENIZER = Path("models/tokenizer")
TOKENIZER_METRICS = Path("metrics/tokenizer.json")
TOKENIZER_PLOT = Path("plots/tokenizer_comparison.png")

SHARDS = Path("data/shards")
CORPUS_METRICS = Path("metrics/corpus.json")

PRETRAINED = Path("models/pretrained")
PRETRAIN_METRICS = Path("metrics/pretrain.json")
PRETRAIN_PLOT = PRETRAINED / "training_curves.png"

MODEL = Path("models/minigpt")
TRAIN_LIVE = Path("dvclive/train")
TRAIN_METRICS = Path("metrics/train.json")
TRAIN_PLOT = Path("plots/training_curves.png")

EVAL_METRICS = Path("metrics/eval.json")
EVAL_SAMPLES = Path("metrics/samples.jsonl")
EVAL_CATEGORIES = Path("plots/eval_categories.json")
EVAL_PLOTS = {
    "categories": Path("plots/benchmark_results.png"),
    "coherence": Path("plots/coherence_score.png"),
    "errors": Path("plots/error_analysis.png"),
}

ADAPTER = Path("models/lora")
LORA_LIVE = Path("dvclive/lora")
LORA_TRAIN_METRICS = Path("metrics/lora_train.json")
LORA_PLOT = Path("plots/lora_curves.png")
LORA_METRICS = Path("metrics/lora.json")

ARCHITECTURES_METRICS = Path("metrics/architectures.json")
ARCHITECTURES_PLOT = Path("plots/architectures.png")

REPORT = Path("metrics/report.md")
HEADLINE = Path("metrics/headline.json")

# Not a stage output: `python -m minigpt hub` assembles folders to upload from the outputs above.
HUB = Path("models/hub")

# Scratch space, deliberately not DVC outputs: a clone that pulls the trained model (or the
# shards) has none. Training checkpoints, and the shards a killed `corpus` run had closed.
CHECKPOINTS = Path("models/checkpoints")
PARTIAL_SHARDS = Path("data/shards.partial")
