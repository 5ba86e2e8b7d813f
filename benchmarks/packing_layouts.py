"""Packing layouts side by side: `masked`, `open` and `padded` rows (see minigpt/packing.py),
each training the default model shape from the same seed for the same number of steps, then
scored on the validation answers, one example at a time as at inference.

    python benchmarks/packing_layouts.py                          # bundled data, and the kit's slice if present
    python benchmarks/packing_layouts.py --steps 300 --kit ../shared/data --kit-examples 8000

Data: the bundled sources through `prepare` (params.yaml), and a slice of the data kit's
translation pairs (docs/data-kit.md; split by group: no pair or its reverse in both splits),
each with a BPE tokenizer of `tokenizer.vocab_size` trained on its train split. Columns: answer bits per
byte and perplexity on validation, the row tokens per second the loop reports (padding
included), the share of them that is real (non-padding) tokens, and how many examples the
steps went through.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minigpt.config import PACKING_LAYOUTS, Params, PrepareParams, load_params  # noqa: E402
from minigpt.data import prepare  # noqa: E402
from minigpt.evaluation import LikelihoodTotals, likelihood  # noqa: E402
from minigpt.model import build_config, init_model, to_hf  # noqa: E402
from minigpt.packing import pack_instructions  # noqa: E402
from minigpt.template import render_example  # noqa: E402
from minigpt.tokenizer import load_tokenizer, save_pretrained, train_bpe  # noqa: E402
from minigpt.training import train_loop  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def datasets(params: Params, kit: Path | None, kit_examples: int) -> dict[str, tuple[list[dict], list[dict]]]:
    """name: (train rows, validation rows)."""
    bundled = prepare(
        params.prepare.model_copy(
            update={
                "sources": [
                    source.model_copy(update={"path": str(REPO / source.path)}) for source in params.prepare.sources
                ]
            }
        )
    )
    found = {"bundled": (bundled.splits["train"], bundled.splits["validation"])}
    if kit is not None and (kit / "instrucciones-es").is_dir():
        pairs = kit_translation_pairs(params, kit)
        validation = pairs["validation"][: max(50, kit_examples // 10)]
        found[f"kit slice ({kit_examples:,} translation pairs)"] = (pairs["train"][:kit_examples], validation)
    return found


def kit_translation_pairs(params: Params, kit: Path) -> dict[str, list[dict]]:
    """The splits of the kit's first translation file (21k examples) through `prepare`, split as
    params.prepare says (by group: no pair or its reverse in both splits)."""
    source = {"kind": "alpaca", "path": str(kit / "instrucciones-es" / "traduccion-1.jsonl")}
    return prepare(
        PrepareParams.model_validate(params.prepare.model_dump() | {"sources": [source], "on_error": "skip"})
    ).splits


def measure(
    params: Params, train: list[dict], validation: list[dict], layout: str, steps: int, tokenizer, seed: int
) -> dict:
    config = build_config(**params.model.model_dump(), tokenizer=tokenizer)
    loop = params.train.model_copy(update={"max_steps": steps, "epochs": 1000.0, "eval_every": 0, "packing": layout})
    runtime = params.runtime.model_copy(update={"log_every": max(1, steps // 5), "checkpoint_every": 0})
    row_length = config.block_size + 1
    rows = pack_instructions(train, tokenizer, row_length, loop.train_on_prompt, layout)
    with tempfile.TemporaryDirectory() as checkpoints:
        result = train_loop(init_model(config, seed), rows, rows, loop, runtime, Path(checkpoints), live_dir=None)
    rows_seen = steps * loop.batch_tokens // config.block_size
    scored = [
        total
        for total in likelihood(
            to_hf(result.model, tokenizer.eos_token_id, tokenizer.pad_token_id).eval(), tokenizer, validation, 16
        )
        if total
    ]
    summary = sum(scored, LikelihoodTotals()).summary()
    # Tokens/s past the first logged interval (the warm-up), as the loop reports them.
    speeds = [entry["tokens_per_second"] for entry in result.history if "tokens_per_second" in entry][1:]
    return {
        "layout": layout,
        "steps": steps,
        "answer_bits_per_byte": summary["bits_per_byte"],
        "answer_perplexity": summary["perplexity"],
        "row_tokens_per_second": round(sum(speeds) / len(speeds)) if speeds else result.summary["tokens_per_second"],
        "real_token_share": round(1 - rows.stats["padding_fraction"], 4),
        "examples_seen": round(rows_seen * rows.stats["sequences"] / len(rows)),
        "train_examples": rows.stats["sequences"],
        "final_train_loss": next(entry["train/loss"] for entry in reversed(result.history) if "train/loss" in entry),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument(
        "--kit",
        type=Path,
        default=REPO.parent / "shared" / "data",
        help="the data kit's folder, docs/data-kit.md (skipped if absent)",
    )
    parser.add_argument("--kit-examples", type=int, default=8000)
    parser.add_argument("--layouts", nargs="+", default=list(PACKING_LAYOUTS), choices=PACKING_LAYOUTS)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--out", type=Path, help="also write the numbers as JSON here")
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml")
    results = {}
    for name, (train, validation) in datasets(params, args.kit, args.kit_examples).items():
        with tempfile.TemporaryDirectory() as directory:
            save_pretrained(
                train_bpe(
                    (render_example(row["instruction"], row["input"], row["output"]) for row in train),
                    params.tokenizer.vocab_size,
                    2,
                ),
                directory,
                model_max_length=1024,
            )
            tokenizer = load_tokenizer(directory)
        started = time.perf_counter()
        results[name] = [
            measure(params, train, validation, layout, args.steps, tokenizer, args.seed) for layout in args.layouts
        ]
        print(
            f"{name}: {len(train):,} train, {len(validation):,} validation, {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    lines = []
    for name, rows in results.items():
        lines += [
            f"\n{name}, {args.steps} steps:\n",
            "| layout | answer bits/byte | answer ppl | row tokens/s | real tokens | examples seen | train loss |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {row['layout']} | {row['answer_bits_per_byte']:.4f} | {row['answer_perplexity']:.2f} | "
            f"{row['row_tokens_per_second']:,} | {row['real_token_share']:.1%} | {row['examples_seen']:,} | "
            f"{row['final_train_loss']:.3f} |"
            for row in rows
        ]
    print("\n".join(lines))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
