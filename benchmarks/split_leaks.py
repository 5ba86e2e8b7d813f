"""Leaks between the splits, per `prepare.split_by`: the validation share and how many
validation examples have their pair, its reverse or their prompt in train, on one source.

    python benchmarks/split_leaks.py                                   # the data kit's translations (docs/data-kit.md)
    python benchmarks/split_leaks.py --path 'data/raw/*.jsonl' --kind jsonl --fraction 0.1

Everything else is params.yaml's `prepare` section. Keys are normalised as for
de-duplication, so a near-duplicate counts as the same text.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import get_args

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minigpt.config import PrepareParams, load_params  # noqa: E402
from minigpt.data import normalize_key, prepare  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SPLITS = get_args(PrepareParams.model_fields["split_by"].annotation)


def leaks(train: list[dict], validation: list[dict]) -> dict[str, int]:
    def pair(row: dict, reverse: bool = False) -> tuple[str, str]:
        texts = (normalize_key(row["input"]), normalize_key(row["output"]))
        return texts[::-1] if reverse else texts

    pairs = {pair(row) for row in train}
    prompts = {normalize_key(row["instruction"], row["input"]) for row in train}
    return {
        "same_pair": sum(pair(row) in pairs for row in validation),
        "reversed_pair": sum(pair(row, reverse=True) in pairs for row in validation),
        "same_prompt": sum(normalize_key(row["instruction"], row["input"]) in prompts for row in validation),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--path",
        default=str(REPO.parent / "shared/data/instrucciones-es/traduccion-*.jsonl"),
        help="files of one source (default: the data kit's translations, docs/data-kit.md)",
    )
    parser.add_argument("--kind", default="alpaca", choices=["alpaca", "jsonl"])
    parser.add_argument("--fraction", type=float, default=0.05, help="validation_fraction")
    parser.add_argument("--split-by", nargs="+", default=list(SPLITS), choices=SPLITS)
    args = parser.parse_args()
    defaults = load_params(REPO / "params.yaml").prepare.model_dump()
    print(
        "| split_by | kept | validation | share | pair in train | reversed pair in train | prompt in train | seconds |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for split_by in args.split_by:
        started = time.perf_counter()
        params = PrepareParams.model_validate(
            defaults
            | {
                "sources": [{"kind": args.kind, "path": args.path}],
                "on_error": "skip",
                "split_by": split_by,
                "validation_fraction": args.fraction,
            }
        )
        splits = prepare(params).splits
        kept = len(splits["train"]) + len(splits["validation"])
        found = leaks(splits["train"], splits["validation"])
        print(
            f"| {split_by} | {kept:,} | {len(splits['validation']):,} | {len(splits['validation']) / kept:.2%} | "
            f"{found['same_pair']:,} | {found['reversed_pair']:,} | {found['same_prompt']:,} | "
            f"{time.perf_counter() - started:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
