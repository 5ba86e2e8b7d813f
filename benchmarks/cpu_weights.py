"""Answering on a CPU in each weight format (`--weights` of `python -m minigpt`): speed, memory
and how far scores move from fp32, side by side in one run.

    python benchmarks/cpu_weights.py                                  # the default model and the 110M shape
    python benchmarks/cpu_weights.py --shapes default --examples 40 --out cpu_weights.json

Each (shape, format) runs in its own process, so peak memory is its own. Speed: batch 1, greedy
with the KV cache (HF `generate`, what the chat runs), answers forced to `--new-tokens`, after a
`--prompt-tokens` prompt (capped to leave room for the answer in the model's context); median of
`--repeats`. Quality: answer perplexity of the first `--examples` validation examples
(data/processed) and the share of their greedy answers (`--answer-tokens` long) identical to
fp32's. The default shape is the trained models/minigpt; the 110M shape has random weights
(speed does not depend on what the weights say; its perplexity change shows the rounding only).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.generation import random_model, time_answer  # noqa: E402
from benchmarks.train_step import SHAPES  # noqa: E402
from minigpt import paths, template  # noqa: E402
from minigpt.config import WEIGHT_FORMATS  # noqa: E402
from minigpt.decoding import GenerationSettings  # noqa: E402
from minigpt.evaluation import LikelihoodTotals, likelihood, validation_rows  # noqa: E402
from minigpt.generation import context_length, generate, load_model  # noqa: E402
from minigpt.quantize import compress  # noqa: E402
from minigpt.tokenizer import load_tokenizer  # noqa: E402


def measure(shape: str, weights: str, args: argparse.Namespace) -> dict:
    """One (shape, format), in this process: speed, peak memory, perplexity and greedy answers."""
    trained = shape == "default" and (paths.MODEL / "config.json").is_file()
    if trained:
        model, tokenizer = load_model(paths.MODEL, "cpu", weights=weights)
    else:
        model, tokenizer = (
            compress(random_model(shape, "cpu", torch.float32)[0], weights),
            load_tokenizer(paths.TOKENIZER),
        )
    rows = validation_rows(paths.PROCESSED_DATA)[: args.examples]
    return {
        "shape": shape,
        "weights": weights,
        "model": "trained" if trained else "random weights",
        **answer_speed(model, tokenizer, rows, args.prompt_tokens, args.new_tokens, args.repeats),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        **answer_quality(model, tokenizer, rows, args.answer_tokens),
    }


def answer_speed(model, tokenizer, rows: list[dict], prompt_tokens: int, new_tokens: int, repeats: int) -> dict:
    """Batch 1 greedy answers forced to `new_tokens` after a prompt of (up to) `prompt_tokens`
    cut from `rows`' answers: median first-token time and decoding tokens/s."""
    prompt_length = min(prompt_tokens, context_length(model) - new_tokens)
    prompt_ids = tokenizer("\n".join(row["output"] for row in rows), add_special_tokens=False, verbose=False)[
        "input_ids"
    ]
    prompt = torch.tensor([prompt_ids[:prompt_length]])
    time_answer(model, tokenizer, prompt, 8, {})  # warm-up
    runs = [time_answer(model, tokenizer, prompt, new_tokens, {}) for _ in range(repeats)]
    return {
        "prompt_tokens": prompt.shape[1],
        "new_tokens": runs[0][2],
        "first_token_ms": round(1000 * statistics.median(run[0] for run in runs), 1),
        "tokens_per_second": round(statistics.median(run[1] for run in runs), 1),
    }


def answer_quality(model, tokenizer, rows: list[dict], answer_tokens: int) -> dict:
    """Answer perplexity of `rows` and their greedy answers (`answer_tokens` long, batch 1)."""
    totals = [total for total in likelihood(model, tokenizer, rows, batch_size=8) if total is not None]
    answers = generate(
        model,
        tokenizer,
        [template.render_row_prompt(row) for row in rows],
        GenerationSettings(max_new_tokens=answer_tokens),
        batch_size=1,
    )
    return {
        "answer_perplexity": sum(totals, LikelihoodTotals()).summary()["perplexity"],
        "answers": [answer.text for answer in answers],
    }


def against_first(row: dict, first: dict) -> dict:
    """`row` with its change against `first` (the same model in fp32): perplexity, identical greedy
    answers and speed."""
    row["perplexity_change"] = round(row["answer_perplexity"] / first["answer_perplexity"] - 1, 5)
    row["identical_answers"] = round(statistics.mean(a == b for a, b in zip(row["answers"], first["answers"])), 4)
    row["speed_vs_first"] = round(row["tokens_per_second"] / first["tokens_per_second"], 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["default", "seed"], choices=sorted(SHAPES))
    parser.add_argument("--weights", nargs="+", default=list(WEIGHT_FORMATS), choices=WEIGHT_FORMATS)
    parser.add_argument("--prompt-tokens", type=int, default=200)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--examples", type=int, default=60, help="validation examples scored and answered")
    parser.add_argument("--answer-tokens", type=int, default=32)
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    parser.add_argument("--one", nargs=2, metavar=("SHAPE", "WEIGHTS"), help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        args.child_out.write_text(json.dumps(measure(*args.one, args)), encoding="utf-8")
        return

    print(f"CPU, {torch.get_num_threads()} threads, batch 1, median of {args.repeats}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for shape in args.shapes:
            baseline = None
            for weights in args.weights:
                out = Path(scratch) / f"{shape}-{weights}.json"
                child = [sys.executable, __file__, "--one", shape, weights, "--child-out", str(out)]
                child += [f"--{name.replace('_', '-')}={getattr(args, name)}" for name in CHILD_OPTIONS]
                subprocess.run(child, check=True)
                row = json.loads(out.read_text(encoding="utf-8"))
                baseline = baseline or row  # the first format listed (fp32 by default) is the reference
                results.append(against_first(row, baseline))
                print(
                    f"{shape:<8} {weights:<5} {row['model']:<15} prompt {row['prompt_tokens']:>3}: "
                    f"first token {row['first_token_ms']:>7} ms, {row['tokens_per_second']:>7} tokens/s "
                    f"({row['speed_vs_first']}×), peak {row['peak_rss_mib']:>5} MiB, answer perplexity "
                    f"{row['answer_perplexity']} ({row['perplexity_change']:+.2%}), identical greedy answers "
                    f"{row['identical_answers']:.0%}",
                    flush=True,
                )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


CHILD_OPTIONS = ("prompt_tokens", "new_tokens", "repeats", "examples", "answer_tokens")

if __name__ == "__main__":
    main()
