"""Stage `report`: every stage's metrics -> metrics/report.md, the report card."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from minigpt.config import PARAMS_FILE, load_params
from minigpt.errors import MiniGPTError, run_main
from minigpt.files import atomic_file, read_jsonl
from minigpt.report import git_revision, render_report

METRICS_DIR = Path("metrics")
REPORT_FILE = METRICS_DIR / "report.md"


def read_metrics(name: str) -> dict:
    path = METRICS_DIR / f"{name}.json"
    if not path.is_file():
        raise MiniGPTError(f"{path} not found: run 'dvc repro' to produce every stage's metrics first")
    return json.loads(path.read_text(encoding="utf-8"))


def main() -> None:
    load_params()  # validated like every stage's; the report prints the file as written
    params = yaml.safe_load(Path(PARAMS_FILE).read_text(encoding="utf-8"))
    text = render_report(read_metrics("data"), read_metrics("tokenizer"), read_metrics("train"),
                         read_metrics("eval"), read_jsonl(METRICS_DIR / "samples.jsonl"),
                         {section: params[section] for section in ("model", "train", "evaluate", "lora", "compare_architectures")},
                         git_revision(), lora=read_metrics("lora"), architectures=read_metrics("architectures"))
    with atomic_file(REPORT_FILE) as handle:
        handle.write(text)
    print(f"report: {REPORT_FILE}")


if __name__ == "__main__":
    run_main(main)
