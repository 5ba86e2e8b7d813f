"""Stage `report`: every stage's metrics -> metrics/report.md (the report card) and
metrics/headline.json (the numbers `dvc exp show` compares)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from minigpt import paths
from minigpt.config import PARAMS_FILE, load_params
from minigpt.errors import MiniGPTError, run_main
from minigpt.files import atomic_file, read_jsonl, write_json
from minigpt.report import git_revision, headline, pipeline_outputs, render_report

STAGE_METRICS = {
    "data": paths.DATA_METRICS,
    "tokenizer": paths.TOKENIZER_METRICS,
    "corpus": paths.CORPUS_METRICS,
    "pretrain": paths.PRETRAIN_METRICS,
    "train": paths.TRAIN_METRICS,
    "eval": paths.EVAL_METRICS,
    "lora": paths.LORA_METRICS,
    "architectures": paths.ARCHITECTURES_METRICS,
}

# The params the report prints: the model and every stage that trains or scores it.
REPORTED_PARAMS = ("model", "corpus", "pretrain", "train", "evaluate", "lora", "compare_architectures")


def read_metrics(path: Path) -> dict:
    if not path.is_file():
        raise MiniGPTError(f"{path} not found: run 'dvc repro' to produce every stage's metrics first")
    return json.loads(path.read_text(encoding="utf-8"))


def main() -> None:
    load_params()  # validated like every stage's; the report prints the file as written
    params = yaml.safe_load(Path(PARAMS_FILE).read_text(encoding="utf-8"))
    metrics = {name: read_metrics(path) for name, path in STAGE_METRICS.items()}
    # Like git's state, dvc.yaml is read for provenance only (DVC forbids it as a dep): the
    # revision line leaves out the files the pipeline itself writes.
    revision = git_revision(pipeline_outputs(Path("dvc.yaml").read_text(encoding="utf-8")))
    text = render_report(
        metrics["data"],
        metrics["tokenizer"],
        metrics["train"],
        metrics["eval"],
        read_jsonl(paths.EVAL_SAMPLES),
        {section: params[section] for section in REPORTED_PARAMS if section in params},
        revision,
        lora=metrics["lora"],
        architectures=metrics["architectures"],
        corpus=metrics["corpus"],
        pretrain=metrics["pretrain"],
    )
    with atomic_file(paths.REPORT) as handle:
        handle.write(text)
    write_json(paths.HEADLINE, headline(metrics["train"], metrics["eval"], metrics["lora"], metrics["architectures"]))
    print(f"report: {paths.REPORT}, {paths.HEADLINE} ({revision})")


if __name__ == "__main__":
    run_main(main)
