"""Does pretraining pay at this scale? At equal total optimizer steps on this machine:
instruction tuning only, against a share of the steps spent pretraining on the data kit's
corpus-es (docs/data-kit.md) first (then instruction tuning from those weights), each scored on
held-out translation pairs (answer bits per byte and perplexity) and on multiple-choice items.

    python benchmarks/pretraining_pays.py                              # 600 steps; shares 0, 0.25, 0.5
    python benchmarks/pretraining_pays.py --steps 100 --shares 0 0.5   # quicker

Everything goes through the project's code: `prepare` on --examples of the kit's translation
pairs (split by group: no pair or its reverse in both splits), a BPE of --vocab-size trained on
their train split plus a sample of the corpus (as the `tokenizer` stage does), the corpus
tokenized into shards (the `corpus` stage's ShardBuilder), the loop of `pretrain` on its windows
and of `train` on packed examples, with params.yaml's model shape and loop settings. Scores:
the validation pairs' answers, one at a time as at inference; the Okapi multiple-choice items
of the kit (ARC and MMLU in Spanish, --choice-items of them) and the bundled
data/eval/opcion_multiple.jsonl, by the summed likelihood of each option (lm-eval's `acc`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.packing_layouts import kit_translation_pairs  # noqa: E402
from minigpt.config import CorpusParams, load_params  # noqa: E402
from minigpt.corpus import CorpusSample, ShardBuilder  # noqa: E402
from minigpt.evaluation import LikelihoodTotals, likelihood, load_choice_items, multiple_choice_accuracy  # noqa: E402
from minigpt.model import build_config, init_model, to_hf  # noqa: E402
from minigpt.packing import ShardWindows, pack_instructions  # noqa: E402
from minigpt.shards import read_index  # noqa: E402
from minigpt.template import render_example  # noqa: E402
from minigpt.tokenizer import load_tokenizer, save_pretrained, train_bpe  # noqa: E402
from minigpt.training import train_loop  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def run_arm(params, share: float, steps: int, rows, windows, tokenizer, scratch: Path, seed: int) -> dict:
    """`share` of the steps pretraining on the corpus's windows, the rest instruction tuning."""
    config = build_config(**params.model.model_dump(), tokenizer=tokenizer)
    runtime = params.runtime.model_copy(update={"log_every": max(1, steps // 10), "checkpoint_every": 0})
    model, history = init_model(config, seed), {}
    started = time.perf_counter()
    phases = (
        ("pretrain", params.pretrain, windows, round(share * steps)),
        ("train", params.train, rows, steps - round(share * steps)),
    )
    for name, loop, data, phase_steps in phases:
        if not phase_steps:
            continue
        loop = loop.model_copy(update={"max_steps": phase_steps, "epochs": 1000.0, "train_tokens": 0, "eval_every": 0})
        result = train_loop(model, data, data, loop, runtime, scratch / f"{share}-{name}", live_dir=None)
        model = result.model
        history[name] = next(entry["train/loss"] for entry in reversed(result.history) if "train/loss" in entry)
    return {"share": share, "model": model, "seconds": time.perf_counter() - started, "final_loss": history}


def score(model, tokenizer, validation: list[dict], choice_sets: dict[str, list], batch_size: int) -> dict:
    hf_model = to_hf(model, tokenizer.eos_token_id, tokenizer.pad_token_id).eval()
    scored = [total for total in likelihood(hf_model, tokenizer, validation, batch_size) if total]
    summary = sum(scored, LikelihoodTotals()).summary()
    scores = {"answer_bits_per_byte": summary["bits_per_byte"], "answer_perplexity": summary["perplexity"]}
    for name, items in choice_sets.items():
        scores[name] = multiple_choice_accuracy(hf_model, tokenizer, items, batch_size)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--kit", type=Path, default=REPO.parent / "shared" / "data", help="the data kit's folder (docs/data-kit.md)"
    )
    parser.add_argument("--steps", type=int, default=600, help="optimizer steps of every arm, both phases together")
    parser.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.25, 0.5], help="of the steps pretraining")
    parser.add_argument("--examples", type=int, default=20_000, help="translation examples to instruction-tune on")
    parser.add_argument("--vocab-size", type=int, default=8_000)
    parser.add_argument("--corpus-chars", type=int, default=5_000_000, help="of the corpus the tokenizer learns from")
    parser.add_argument("--choice-items", type=int, default=500, help="Okapi items scored (of 5,961)")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--out", type=Path, help="also write the numbers as JSON here")
    args = parser.parse_args()
    if not (args.kit / "corpus-es").is_dir():
        sys.exit(f"data kit not found at {args.kit}: pass --kit DIR (docs/data-kit.md)")
    params = load_params(REPO / "params.yaml")
    pairs = kit_translation_pairs(params, args.kit)
    train, validation = pairs["train"][: args.examples], pairs["validation"][: max(100, args.examples // 20)]
    corpus = CorpusParams.model_validate({"sources": [{"path": str(args.kit / "corpus-es" / "*.txt")}]})
    choice_sets = {
        "okapi": load_choice_items(str(args.kit / "instrucciones-es" / "opcion-multiple.jsonl"))[: args.choice_items],
        "hechos": load_choice_items(str(REPO / "data" / "eval" / "opcion_multiple.jsonl")),
    }
    results = []
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        sample = CorpusSample(corpus, args.corpus_chars)
        texts = itertools.chain(
            (render_example(row["instruction"], row["input"], row["output"]) for row in train), sample
        )
        save_pretrained(train_bpe(texts, args.vocab_size, 2), scratch / "tokenizer", model_max_length=1024)
        tokenizer = load_tokenizer(scratch / "tokenizer")
        builder = ShardBuilder(corpus, scratch / "tokenizer", scratch / "shards.partial")
        builder.run()
        builder.finish(scratch / "shards")
        row_length = params.model.block_size + 1
        windows = ShardWindows(
            scratch / "shards", read_index(scratch / "shards"), "train", row_length, params.pretrain.packing
        )
        rows = pack_instructions(train, tokenizer, row_length, params.train.train_on_prompt, params.train.packing)
        print(
            f"{len(train):,} train / {len(validation):,} validation pairs ({len(rows):,} rows); corpus "
            f"{windows.stats['tokens']:,} tokens ({len(windows):,} windows)",
            flush=True,
        )
        for share in args.shares:
            arm = run_arm(params, share, args.steps, rows, windows, tokenizer, scratch, args.seed)
            arm |= score(arm.pop("model"), tokenizer, validation, choice_sets, params.runtime.inference_batch_size)
            results.append(arm)
            print(json.dumps(arm), flush=True)

    tokens = args.steps * params.train.batch_tokens
    lines = [
        f"\n{args.steps} steps of {params.train.batch_tokens:,} tokens ({tokens:,} in all) per arm; model "
        f"{params.model.n_layer} × {params.model.n_head} × {params.model.n_embd}, vocabulary {len(tokenizer):,}\n",
        "| pretraining steps | instruction steps | answer bits/byte | answer ppl | Okapi acc | hechos acc | train s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arm in results:
        pretraining = round(arm["share"] * args.steps)
        lines.append(
            f"| {pretraining} | {args.steps - pretraining} | {arm['answer_bits_per_byte']:.4f} | "
            f"{arm['answer_perplexity']:.2f} | {arm['okapi']['accuracy']:.3f} | {arm['hechos']['accuracy']:.3f} | "
            f"{arm['seconds']:.0f} |"
        )
    chance = ", ".join(
        f"{name} {results[0][name]['chance']:.3f} ({results[0][name]['items']} items)" for name in choice_sets
    )
    lines.append(f"\nChance: {chance}.")
    print("\n".join(lines))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
