"""Stage `prepare`: instruction sources -> data/processed/{train,validation}.jsonl + metrics/data.json."""

from __future__ import annotations

import sys
import time

from minigpt import paths
from minigpt.config import load_params
from minigpt.data import prepare
from minigpt.errors import MiniGPTError, run_main
from minigpt.files import atomic_directory, warn_if_untracked, write_json, write_jsonl


def main() -> None:
    params = load_params().prepare
    warn_if_untracked([source.path for source in params.sources if source.path], "prepare", paths.RAW_DATA)
    started = time.perf_counter()
    result = prepare(params)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if result.split_problem:  # every later stage needs both splits: stop here, saying why
        raise MiniGPTError(result.split_problem)
    with atomic_directory(paths.PROCESSED_DATA) as tmp:  # both splits appear together, or neither does
        for split, rows in result.splits.items():
            write_jsonl(tmp / f"{split}.jsonl", rows)
    write_json(paths.DATA_METRICS, result.stats)
    counts = result.stats["examples"]
    print(
        f"prepare: {counts['read']} read, {counts['kept']} kept -> {counts['train']} train / "
        f"{counts['validation']} validation in {time.perf_counter() - started:.1f}s"
    )


if __name__ == "__main__":
    run_main(main)
