"""Seed scale in one run: the pipeline's code at the reference's shape (12 × 12 × 768, context
512, vocab 32,000) on the real Spanish data kit, on one GPU, in about ten minutes.

    python benchmarks/gpu_seed_scale.py --data gpu_data --out results/              # GPU, seed scale
    python benchmarks/gpu_seed_scale.py --data kit --out /tmp/r --scale tiny       # CPU, minutes (the test)

`--data` holds a copy of the kit's layout (`corpus-es/*.txt`, `instrucciones-es/traduccion-*.jsonl`,
`instrucciones-es/opcion-multiple.jsonl`). It writes `results.json` and `results.md` to `--out`:
1. training throughput: `benchmarks/train_step.py` (the project's loop beside plain HF GPT-2,
   tokens/s, MFU against the measured bf16 peak, peak memory);
2. the reference's recipe (one example per padded row, loss on every token) against ours
   (text pretraining, then packed rows with the loss on answers), given the same GPU seconds:
   validation loss and bits per byte on the answers, multiple-choice accuracy on the kit's
   Okapi items, wall time;
3. generation speed of our trained model at batch 1 and 16.
It needs only torch, transformers, tokenizers, accelerate and pydantic (no dvc, dvclive or
network): telemetry falls back to JSON, weights stay on the machine, numbers come back.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minigpt.config import LoopParams, PrepareParams, load_params  # noqa: E402
from minigpt.data import prepare  # noqa: E402
from minigpt.evaluation import evaluate_model  # noqa: E402
from minigpt.generation import GenerationSettings, generate  # noqa: E402
from minigpt.model import GPTConfig, init_model, to_hf  # noqa: E402
from minigpt.template import render_prompt  # noqa: E402
from minigpt.tokenizer import load_tokenizer, plain_text, read_documents, save_pretrained, train_bpe  # noqa: E402
from minigpt.training import PackedRows, encode_documents, encode_instructions, pack, run  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SCALES = {  # shape, rows per step, micro-batch, seconds per recipe, validation examples scored
    "seed": dict(vocab=32_000, shape=dict(n_layer=12, n_head=12, n_embd=768, block_size=512), rows=32, micro=32,
                 seconds=150.0, validation=1000, choices=2000, throughput=["--shape", "seed", "--rows", "32",
                                                                          "--compile", "--measure-peak"]),
    "tiny": dict(vocab=400, shape=dict(n_layer=1, n_head=2, n_embd=32, block_size=64), rows=4, micro=4,
                 seconds=4.0, validation=20, choices=10, throughput=["--rows", "2", "--steps", "3"]),
}
REFERENCE_RECIPE, OUR_RECIPE = "reference (padded, full loss)", "ours (pretrain + packed, answer loss)"
PRETRAIN_SHARE = 0.3  # of our recipe's seconds spent on plain text before instruction tuning


def build_data(data_dir: Path, out: Path, scale: dict) -> tuple[object, list[dict], list[dict], list[Path]]:
    """The kit's instructions through `prepare`, and a BPE tokenizer trained on corpus + train split."""
    defaults = load_params(REPO / "params.yaml").prepare.model_dump()
    sources = [{"kind": "alpaca", "path": str(data_dir / "instrucciones-es" / "traduccion-*.jsonl")}]
    prepared = prepare(PrepareParams.model_validate(defaults | {"sources": sources, "on_error": "skip"}))
    corpus = sorted((data_dir / "corpus-es").glob("*.txt"))
    texts = [text for path in corpus for text in read_documents(path, plain_text)]
    texts += [render_prompt(row["instruction"], row["input"]) + row["output"] for row in prepared.splits["train"]]
    save_pretrained(train_bpe(texts, scale["vocab"], min_frequency=2), out / "tokenizer",
                    model_max_length=scale["shape"]["block_size"])
    return load_tokenizer(out / "tokenizer"), prepared.splits["train"], prepared.splits["validation"], corpus


def padded_rows(sequences, row_length: int, pad_id: int) -> PackedRows:
    """The reference's batches: one example per row, cut to the row, padded; loss on every token."""
    tokens = torch.full((len(sequences), row_length), pad_id, dtype=torch.long)
    targets = torch.zeros((len(sequences), row_length), dtype=torch.bool)
    for row, (ids, _) in enumerate(sequences):
        ids = ids[:row_length]
        tokens[row, :len(ids)] = torch.tensor(ids)
        targets[row, 1:len(ids)] = True
    return PackedRows(tokens, targets, {"rows": len(sequences), "padding_fraction":
                                        round(1 - targets.sum().item() / targets.numel(), 4)})


def loop_params(rows: PackedRows, seconds: float, tokens_per_second: float, scale: dict) -> LoopParams:
    """Loop settings whose step count fills `seconds` at the measured speed (a cosine schedule
    needs its length up front, so the budget is turned into steps)."""
    block = scale["shape"]["block_size"]
    steps = max(2, int(seconds * tokens_per_second / (scale["rows"] * block)))
    return LoopParams(epochs=steps * scale["rows"] / len(rows), micro_batch_size=scale["micro"],
                      batch_tokens=scale["rows"] * block, learning_rate=6e-4, min_lr_ratio=0.1,
                      warmup_steps=min(100, steps // 10), weight_decay=0.1, beta1=0.9, beta2=0.95, grad_clip=1.0,
                      log_every=max(1, steps // 20), eval_every=max(1, steps), eval_rows=64,
                      checkpoint_every=10**9, keep_checkpoints=1, precision="auto", compile=torch.cuda.is_available(),
                      seed=0)


def train_recipe(model, rows: PackedRows, validation: PackedRows, params: LoopParams, out: Path, name: str) -> dict:
    started = time.perf_counter()
    result = run(model, rows, validation, params, out / "checkpoints" / name, live_dir=None)
    return {"model": result.model, "summary": result.summary, "wall_seconds": round(time.perf_counter() - started, 1)}


def as_hf(model, tokenizer):
    """The trained lean model as the Hugging Face model that evaluation and generation take."""
    return to_hf(model, tokenizer.eos_token_id, tokenizer.pad_token_id).to(_device()).eval()


def score(hf_model, tokenizer, validation: list[dict], choices: Path, scale: dict, out: Path) -> dict:
    items = out / "choices-sample.jsonl"  # the kit's first items (the data folder may be read-only)
    lines = choices.read_text(encoding="utf-8").splitlines()[:scale["choices"]]
    items.write_text("\n".join(lines) + "\n", encoding="utf-8")
    metrics, _ = evaluate_model(hf_model, tokenizer, validation[:scale["validation"]], {"okapi": str(items)},
                                GenerationSettings(max_new_tokens=32), generate_count=16, batch_size=16)
    return {"perplexity": metrics["perplexity"], "bits_per_byte": metrics["bits_per_byte"],
            "okapi_accuracy": metrics["multiple_choice"]["okapi"]["accuracy"],
            "okapi_chance": metrics["multiple_choice"]["okapi"]["chance"]}


def generation_speed(hf_model, tokenizer, validation: list[dict], new_tokens: int) -> dict:
    prompts = [render_prompt(row["instruction"], row["input"]) for row in validation[:16]]
    speeds = {}
    for batch in (1, 16):
        generate(hf_model, tokenizer, prompts[:batch], GenerationSettings(max_new_tokens=8), batch_size=batch)  # warm-up
        started = time.perf_counter()
        answers = generate(hf_model, tokenizer, prompts[:batch], GenerationSettings(max_new_tokens=new_tokens),
                           batch_size=batch)
        seconds = time.perf_counter() - started
        new = sum(answer.new_tokens for answer in answers)
        speeds[f"batch_{batch}"] = {"new_tokens": new, "tokens_per_second": round(new / seconds, 1)}
    return speeds


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def throughput(out: Path, scale: dict) -> dict:
    """benchmarks/train_step.py in its own process (it compiles and measures the peak)."""
    target = out / "throughput.json"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "train_step.py"), *scale["throughput"], "--out",
                    str(target)], check=True)
    return json.loads(target.read_text())


def markdown(results: dict) -> str:
    recipes = results["recipes"]
    lines = [f"# Seed scale on {results['device']}", "",
             f"Commit `{results['commit']}`, {results['date']}, torch {results['torch']}, scale `{results['scale']}`.", "",
             "## Recipes at equal GPU seconds", "",
             "| recipe | steps | tokens | train s | wall s | answer perplexity | bits/byte | Okapi accuracy |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, recipe in recipes.items():
        scores = recipe["scores"]
        lines.append(f"| {name} | {recipe['steps']} | {recipe['tokens']:,} | {recipe['train_seconds']} | "
                     f"{recipe['wall_seconds']} | {scores['perplexity']} | {scores['bits_per_byte']} | "
                     f"{scores['okapi_accuracy']} (chance {scores['okapi_chance']}) |")
    lines += ["", "## Generation (ours, greedy)", "", "| batch | new tokens | tokens/s |", "|---:|---:|---:|"]
    lines += [f"| {name.split('_')[1]} | {row['new_tokens']} | {row['tokens_per_second']} |"
              for name, row in results["generation"].items()]
    lines += ["", "## Training throughput (benchmarks/train_step.py)", "", "```json",
              json.dumps(results["throughput"], indent=2), "```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a copy of the data kit's layout")
    parser.add_argument("--out", type=Path, required=True, help="results.json and results.md go here")
    parser.add_argument("--scale", choices=sorted(SCALES), default="seed")
    parser.add_argument("--seconds", type=float, help="training seconds per recipe (default: the scale's)")
    parser.add_argument("--commit", default=None, help="the commit measured (default: git rev-parse HEAD)")
    args = parser.parse_args()
    scale = SCALES[args.scale]
    seconds = args.seconds or scale["seconds"]
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    speed = throughput(args.out, scale)
    tokenizer, train_split, validation, corpus = build_data(args.data, args.out, scale)
    config = GPTConfig(vocab_size=len(tokenizer), **scale["shape"])
    row_length = config.block_size + 1
    tokens_per_second = speed["results"]["minigpt"]["tokens_per_second"]
    print(f"{len(train_split)} train / {len(validation)} validation examples, {len(corpus)} corpus files, "
          f"{tokens_per_second:,.0f} tokens/s measured", flush=True)
    validation_rows = pack(encode_instructions(validation, tokenizer, False), row_length, tokenizer.pad_token_id)

    reference_rows = padded_rows(encode_instructions(train_split, tokenizer, True), row_length, tokenizer.pad_token_id)
    reference = train_recipe(init_model(config, seed=0), reference_rows, validation_rows,
                             loop_params(reference_rows, seconds, tokens_per_second, scale), args.out, "reference")

    documents = [text for path in corpus for text in read_documents(path, plain_text)]
    text_rows = pack(encode_documents(documents, tokenizer, row_length), row_length, tokenizer.pad_token_id)
    pretrained = train_recipe(init_model(config, seed=0), text_rows, validation_rows,
                              loop_params(text_rows, PRETRAIN_SHARE * seconds, tokens_per_second, scale),
                              args.out, "pretrain")
    packed = pack(encode_instructions(train_split, tokenizer, False), row_length, tokenizer.pad_token_id)
    ours = train_recipe(pretrained["model"], packed, validation_rows,
                        loop_params(packed, (1 - PRETRAIN_SHARE) * seconds, tokens_per_second, scale), args.out, "ours")

    choices = args.data / "instrucciones-es" / "opcion-multiple.jsonl"
    recipes, trained = {}, {}
    for name, phases in ((REFERENCE_RECIPE, [reference]), (OUR_RECIPE, [pretrained, ours])):
        trained[name] = as_hf(phases[-1]["model"], tokenizer)
        recipes[name] = {"steps": sum(p["summary"]["steps"] for p in phases),
                         "tokens": sum(p["summary"]["tokens"] for p in phases),
                         "train_seconds": round(sum(p["summary"]["train_seconds"] for p in phases), 1),
                         "wall_seconds": round(sum(p["wall_seconds"] for p in phases), 1),
                         "scores": score(trained[name], tokenizer, validation, choices, scale, args.out)}
    results = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
        "commit": args.commit or _git_commit(), "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
        "scale": args.scale, "seconds_per_recipe": seconds, "throughput": speed, "recipes": recipes,
        "reference_padding": reference_rows.stats["padding_fraction"],
        "generation": generation_speed(trained[OUR_RECIPE], tokenizer, validation,
                                       new_tokens=min(128, config.block_size // 2)),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    (args.out / "results.md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))


def _git_commit() -> str:
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return found.stdout.strip() or "unknown"


if __name__ == "__main__":
    main()
