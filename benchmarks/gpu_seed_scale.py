"""Seed scale in one run: the pipeline's code at the reference's shape (12 × 12 × 768, context
512, vocab 32,000) on the real Spanish data kit, on one GPU, within a time budget (7 minutes).

    bash benchmarks/gpu_seed_scale.sh run OUT --commit abc1234                      # GPU, seed scale
    python benchmarks/gpu_seed_scale.py --data kit --out /tmp/r --scale tiny        # CPU, a minute (the tests)

`--data` holds the kit's layout (`corpus-es/*.txt`, `instrucciones-es/traduccion-*.jsonl`,
`instrucciones-es/opcion-multiple.jsonl`). Phases, each timed, each given a share of the
budget (skipped, with the reason, when too little is left), and `results.json` and
`results.md` rewritten in `--out` after every one, so a run cut short still returns what it
measured:

1. environment: versions, the device, and a torch.compile pre-flight (eager if it fails);
2. throughput: `benchmarks/train_step.py`, the project's training step beside plain HF GPT-2
   in the reference's style (tokens/s, MFU against the measured bf16 peak and the spec);
3. data: the kit's translation pairs through `prepare` (split by pair: no pair or its reverse
   in both splits; validation pairs sharing a sentence with train are left out of scoring),
   and a 32k BPE tokenizer trained on corpus + train split;
4. reference and ours: the reference's recipe (one example per padded row, loss on every token)
   against ours (text pretraining, then document-masked packed rows with the loss on answers), given the same
   GPU seconds; each scored on answer perplexity, bits per byte and multiple-choice accuracy
   on the kit's Okapi items, with a few sample answers;
5. generation: tokens/s of our model (fp32 weights) at batch 1 and 16, answers forced to full length;
6. CPU weights: our trained model on this machine's CPU in each `--weights` format (fp32, then
   int8, then bf16, while the budget allows): answer perplexity and identical greedy answers
   against fp32, and batch-1 speed (the quality `benchmarks/cpu_weights.py` cannot measure
   without a trained 110M model);
7. micro-batch: steps of 64 rows as two micro-batches of 32 and as one of 64 (if time is left).

It imports only what the GPU image has plus pydantic (carried by `gpu_seed_scale.sh`): no dvc,
dvclive, rouge-score or gradio, no network and no git; weights stay on the machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cpu_weights import against_first, answer_quality, answer_speed  # noqa: E402
from minigpt.config import LoopParams, PrepareParams, RuntimeParams, load_params  # noqa: E402
from minigpt.data import normalize_key, prepare  # noqa: E402
from minigpt.evaluation import _likelihood_summary, likelihood, load_choice_items, multiple_choice_accuracy  # noqa: E402
from minigpt.generation import GenerationSettings, _generate_arguments, _left_padded, generate, pick_device  # noqa: E402
from minigpt.metrics import ChoiceItem  # noqa: E402
from minigpt.model import GPT, GPTConfig, init_model, to_hf  # noqa: E402
from minigpt.packing import PackedRows, TokenSequence, encode_documents, encode_instructions, pack  # noqa: E402
from minigpt.quantize import compress  # noqa: E402
from minigpt.template import render_prompt  # noqa: E402
from minigpt.tokenizer import load_tokenizer, plain_text, read_documents, save_pretrained, train_bpe  # noqa: E402
from minigpt.training import device_peak_flops, train_loop  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SCALES = {
    "seed": dict(
        vocab=32_000,
        shape=dict(n_layer=12, n_head=12, n_embd=768, block_size=512),
        rows=32,
        micro=32,
        seconds=75.0,
        budget=420.0,
        validation=1000,
        choices=2000,
        batch=64,
        new_tokens=128,
        cpu_examples=32,
        cpu_answer_tokens=32,
        throughput=["--shape", "seed", "--rows", "32", "--steps", "30", "--measure-peak", "--skip", "hf-tuned"],
        micro_variant=[
            "--shape",
            "seed",
            "--rows",
            "64",
            "--micro",
            "32",
            "64",
            "--steps",
            "30",
            "--measure-peak",
            "--skip",
            "hf-reference",
            "hf-tuned",
        ],
    ),
    "tiny": dict(
        vocab=400,
        shape=dict(n_layer=1, n_head=2, n_embd=32, block_size=64),
        rows=4,
        micro=4,
        seconds=4.0,
        budget=900.0,
        validation=20,
        choices=10,
        batch=8,
        new_tokens=16,
        cpu_examples=4,
        cpu_answer_tokens=8,
        throughput=["--rows", "2", "--steps", "3"],
        micro_variant=["--rows", "4", "--micro", "2", "4", "--steps", "3", "--skip", "hf-reference"],
    ),
}
REFERENCE_RECIPE, OUR_RECIPE = "reference (padded, full loss)", "ours (pretrain + packed, answer loss)"
CPU_FORMATS = ("fp32", "int8", "bf16")  # `--weights` formats, in the order the CPU phase measures them
PRETRAIN_SHARE = 0.3  # of our recipe's seconds spent on plain text before instruction tuning
VALIDATION_FRACTION = 0.05  # the reference's
# Seconds a recipe costs beyond its training: rows, compile (cold for the first, cached for the
# second), export and scoring; and the least training worth comparing.
FIRST_RECIPE_OVERHEAD, LATER_RECIPE_OVERHEAD, MIN_RECIPE_SECONDS = 75.0, 30.0, 20.0


class Report:
    """results.json and results.md, rewritten after every phase; phases run while the budget allows."""

    def __init__(self, out: Path, budget: float, header: dict[str, Any]):
        self.out, self.budget, self.started = out, budget, time.perf_counter()
        self.results: dict[str, Any] = {**header, "budget_seconds": budget, "phases": {}}

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.started)

    def phase(self, name: str, needs: float, work: Callable[[], Any], keep: bool = True) -> Any:
        """Run `work` if `needs` seconds are left and return its value (kept under `name` in the
        results if `keep`); a failure is recorded, never raised."""
        if needs > self.left():
            self._record(name, {"status": "skipped", "reason": f"needs ~{needs:.0f} s, {self.left():.0f} s left"})
            return None
        print(f"--- {name} ({self.left():.0f} s of the budget left)", flush=True)
        started = time.perf_counter()
        try:
            value = work()
        except Exception as error:  # recorded, and the phases that do not depend on it still run
            traceback.print_exc()
            self._record(
                name,
                {
                    "status": "failed",
                    "error": f"{type(error).__name__}: {error}"[:1000],
                    "seconds": round(time.perf_counter() - started, 1),
                },
            )
            return None
        if keep and value is not None:
            self.results[name] = value
        self._record(name, {"status": "done", "seconds": round(time.perf_counter() - started, 1)})
        return value

    def _record(self, name: str, status: dict) -> None:
        self.results["phases"][name] = status
        self.results["total_seconds"] = round(time.perf_counter() - self.started, 1)
        (self.out / "results.json").write_text(json.dumps(self.results, indent=2, ensure_ascii=False), encoding="utf-8")
        (self.out / "results.md").write_text(markdown(self.results), encoding="utf-8")


# --------------------------------------------------------------------------- phases


def environment() -> dict:
    """Versions, device, and whether torch.compile works here (a tiny model, forward and
    backward; on a GPU only: on a CPU the project trains eagerly)."""
    import tokenizers
    import transformers

    device = pick_device().type
    found = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "cpu_threads": torch.get_num_threads(),
        "compile": False,
    }
    if device != "cuda":
        return found
    torch._dynamo.config.suppress_errors = False  # the pre-flight must see a failure
    try:
        model = torch.compile(GPT(GPTConfig(vocab_size=256, block_size=32, n_layer=1, n_head=2, n_embd=64)).to(device))
        tokens = torch.randint(0, 256, (2, 32), device=device)
        with torch.autocast(device, dtype=torch.bfloat16):
            _, loss = model(tokens, tokens)
        loss.backward()
        found["compile"] = True
    except Exception as error:  # an image without a working compiler toolchain: eager, and say so
        print(f"torch.compile does not work here ({type(error).__name__}: {error}): running eager", flush=True)
        found["compile"], found["compile_error"] = False, f"{type(error).__name__}: {error}"[:500]
    torch._dynamo.reset()  # nothing of the tiny model's graphs or shapes carries over
    # From here on a graph that fails to compile runs eagerly instead of ending the run (the log
    # says so); the subprocesses inherit this through the environment.
    torch._dynamo.config.suppress_errors = True
    os.environ["TORCHDYNAMO_SUPPRESS_ERRORS"] = "1"
    return found


def throughput(arguments: list[str], out: Path, name: str, timeout: float) -> dict:
    """benchmarks/train_step.py in its own process (it compiles and measures the peak), bounded in time."""
    target = out / f"{name}.json"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "train_step.py"), *arguments, "--out", str(target)],
        check=True,
        timeout=timeout,
    )
    measured = {**json.loads(target.read_text()), "arguments": arguments}
    spec = device_peak_flops(pick_device())  # the datasheet's dense bf16 figure
    measured["spec_flops"] = spec
    for row in measured["results"].values():
        row["mfu_vs_spec"] = round(row["mfu"] * measured["peak_flops"] / spec, 4) if row["mfu"] and spec else None
    return measured


@dataclass
class Data:
    tokenizer: Any
    train: list[TokenSequence]  # the train split, encoded (targets: the answers)
    validation: list[dict]  # pairs none of whose sentences occur in train, by id
    documents: list[str]  # the corpus, for pretraining
    stats: dict


def build_data(data_dir: Path, scale: dict) -> Data:
    """The kit's translations through `prepare`, split by pair, and a BPE tokenizer trained on
    the corpus + the train split."""
    defaults = load_params(REPO / "params.yaml").prepare.model_dump()
    sources = [{"kind": "alpaca", "path": str(data_dir / "instrucciones-es" / "traduccion-*.jsonl")}]
    prepared = prepare(
        PrepareParams.model_validate(
            defaults
            | {"sources": sources, "on_error": "skip", "split_by": "pair", "validation_fraction": VALIDATION_FRACTION}
        )
    )
    train = prepared.splits["train"]
    seen = {normalize_key(row[field]) for row in train for field in ("input", "output")}
    validation = sorted(
        (
            row
            for row in prepared.splits["validation"]
            if not {normalize_key(row["input"]), normalize_key(row["output"])} & seen
        ),
        key=lambda row: row["id"],
    )  # ids are hashes: a spread of the split
    documents = [
        text for path in sorted((data_dir / "corpus-es").glob("*.txt")) for text in read_documents(path, plain_text)
    ]
    texts = documents + [render_prompt(row["instruction"], row["input"]) + row["output"] for row in train]
    directory = (
        Path(tempfile.mkdtemp()) / "tokenizer"
    )  # not in `out`: only a few files may come back from a GPU machine
    save_pretrained(
        train_bpe(texts, scale["vocab"], min_frequency=2), directory, model_max_length=scale["shape"]["block_size"]
    )
    tokenizer = load_tokenizer(directory)
    stats = {
        "train": len(train),
        "validation": len(prepared.splits["validation"]),
        "validation_unseen": len(validation),
        "corpus_documents": len(documents),
        "vocab": len(tokenizer),
        "dropped": {name: count for name, count in prepared.stats["dropped"].items() if count},
    }
    print(f"data: {stats}", flush=True)
    return Data(tokenizer, encode_instructions(train, tokenizer, train_on_prompt=False), validation, documents, stats)


def padded_rows(sequences: list[TokenSequence], row_length: int, pad_id: int) -> PackedRows:
    """The reference's batches: one example per row, cut to the row, padded; loss on every token."""
    return pack([(ids, [True] * len(ids)) for ids, _ in sequences], row_length, pad_id, "padded")


def loop_settings(
    rows: PackedRows, seconds: float, tokens_per_second: float, scale: dict, compile_model: bool
) -> tuple[LoopParams, RuntimeParams]:
    """Params whose step count fills `seconds` at the measured speed (a cosine schedule needs its
    length up front, so the budget is turned into steps), and how to run them. No evaluation and
    no checkpoint inside the loop: scoring comes after, and nothing here is resumed."""
    block = scale["shape"]["block_size"]
    steps = max(2, int(seconds * tokens_per_second / (scale["rows"] * block)))
    params = LoopParams(
        epochs=steps * scale["rows"] / len(rows),
        micro_batch_size=scale["micro"],
        batch_tokens=scale["rows"] * block,
        learning_rate=6e-4,
        min_lr_ratio=0.1,
        warmup_steps=min(100, steps // 10),
        weight_decay=0.1,
        beta1=0.9,
        beta2=0.95,
        grad_clip=1.0,
        eval_every=0,
        eval_rows=0,
        precision="auto",
        seed=0,
    )
    return params, RuntimeParams(compile=compile_model, log_every=max(1, steps // 10), checkpoint_every=0)


def train_recipe(
    phases: list[tuple[PackedRows, float]],
    seconds: float,
    tokens_per_second: float,
    scale: dict,
    compile_model: bool,
    tokenizer,
) -> tuple[Any, dict]:
    """Train one fresh model through `phases` (rows, share of `seconds`); (Hugging Face model, numbers)."""
    config = GPTConfig(vocab_size=len(tokenizer), **scale["shape"])
    model, totals, started = (
        init_model(config, seed=0),
        {"steps": 0, "tokens": 0, "train_seconds": 0.0},
        time.perf_counter(),
    )
    speeds = []  # tokens/s of every logged interval but each run's first (which holds the compile)
    for rows, share in phases:
        params, runtime = loop_settings(rows, share * seconds, tokens_per_second, scale, compile_model)
        with tempfile.TemporaryDirectory() as checkpoints:
            result = train_loop(model, rows, rows, params, runtime, Path(checkpoints), live_dir=None)
        model = result.model
        for key in ("steps", "tokens", "train_seconds"):
            totals[key] += result.summary[key]
        totals["final_train_loss"] = next(
            entry["train/loss"] for entry in reversed(result.history) if "train/loss" in entry
        )
        speeds += [entry["tokens_per_second"] for entry in result.history if "tokens_per_second" in entry][1:]
    totals["train_seconds"] = round(totals["train_seconds"], 1)
    totals["steady_tokens_per_second"] = round(statistics.median(speeds)) if speeds else None
    totals["wall_seconds"] = round(time.perf_counter() - started, 1)
    hf_model = to_hf(model, tokenizer.eos_token_id, tokenizer.pad_token_id).to(pick_device()).eval()
    return hf_model, totals


def score(hf_model, data: Data, choices: list[ChoiceItem], scale: dict) -> dict:
    """Answer likelihood on unseen validation pairs and multiple-choice accuracy (no generation
    metrics: ROUGE needs rouge-score, which the GPU image lacks), with three sample answers."""
    rows = data.validation[: scale["validation"]]
    summary = _likelihood_summary(likelihood(hf_model, data.tokenizer, rows, scale["batch"]))
    choice = multiple_choice_accuracy(hf_model, data.tokenizer, choices, scale["batch"])
    samples = rows[:3]
    answers = generate(
        hf_model,
        data.tokenizer,
        [render_prompt(row["instruction"], row["input"]) for row in samples],
        GenerationSettings(max_new_tokens=48),
    )
    return {
        **summary,
        "examples_scored": len(rows) - summary["too_long"],
        "okapi_accuracy": choice["accuracy"],
        "okapi_accuracy_norm": choice["accuracy_norm"],
        "okapi_chance": choice["chance"],
        "okapi_items": choice["items"],
        "samples": [
            {"prompt": f"{row['instruction']} {row['input']}", "reference": row["output"], "answer": answer.text}
            for row, answer in zip(samples, answers)
        ],
    }


def generation_speed(hf_model, tokenizer, validation: list[dict], new_tokens: int) -> dict:
    """Greedy decoding tokens/s at batch 1 and 16, every answer forced to `new_tokens`."""
    prompts = [render_prompt(row["instruction"], row["input"]) for row in validation[:16]]
    limit = hf_model.config.n_positions
    speeds = {}
    for batch in (1, 16):
        input_ids, attention = _left_padded(tokenizer, prompts[:batch], limit - new_tokens)
        for length in (8, new_tokens):  # a warm-up, then the timed run
            arguments = _generate_arguments(
                hf_model, tokenizer, input_ids, attention, GenerationSettings(max_new_tokens=length), limit
            )
            _synchronize()
            started = time.perf_counter()
            with torch.inference_mode():
                hf_model.generate(**arguments, min_new_tokens=length)
            _synchronize()
        seconds = time.perf_counter() - started
        speeds[f"batch_{batch}"] = {
            "new_tokens": batch * new_tokens,
            "seconds": round(seconds, 2),
            "tokens_per_second": round(batch * new_tokens / seconds, 1),
        }
    return speeds


def cpu_weights(hf_model, tokenizer, validation: list[dict], scale: dict, seconds_left: Callable[[], float]) -> dict:
    """Our trained model on this machine's CPU in each weight format, against fp32: answer
    perplexity and identical greedy answers on the first validation examples, and batch-1 speed
    (`new_tokens` after a prompt of up to 200 tokens). fp32 first (the reference), then int8 (the
    laptop's format), then bf16 (slow where the CPU emulates it); a format is skipped when the
    budget left is not above twice fp32's time (rounded to 0.1 s)."""
    model = hf_model.float().cpu()
    rows = validation[: scale["cpu_examples"]]
    results: dict[str, dict] = {}
    skipped: list[str] = []
    for weights in CPU_FORMATS:
        started = time.perf_counter()
        if results and seconds_left() <= 2 * results["fp32"]["seconds"]:
            skipped.append(weights)
            continue
        candidate = compress(copy.deepcopy(model), weights)
        row = {
            **answer_speed(candidate, tokenizer, rows, 200, scale["new_tokens"], repeats=1),
            **answer_quality(candidate, tokenizer, rows, scale["cpu_answer_tokens"]),
        }
        results[weights] = against_first(row, results.get("fp32", row))
        results[weights]["seconds"] = round(time.perf_counter() - started, 1)
        del results[weights]["answers"][3:]  # three samples are enough to read
    return {"threads": torch.get_num_threads(), "examples": len(rows), "formats": results, "skipped": skipped}


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# --------------------------------------------------------------------------- the report


def _percent(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "-"


def markdown(results: dict) -> str:
    lines = [
        f"# Seed scale on {results.get('environment', {}).get('device', 'an unknown device')}",
        "",
        f"Commit `{results['commit']}`, {results['date']}, scale `{results['scale']}`, "
        f"{results['total_seconds']} s of a {results['budget_seconds']:.0f} s budget.",
        "",
        "| phase | status | seconds |",
        "|---|---|---:|",
    ]
    for name, phase in results["phases"].items():
        why = " ".join(phase.get("reason", phase.get("error", "")).split()).replace("|", "/")  # one table cell
        lines.append(f"| {name} | {phase['status']}{': ' + why if why else ''} | {phase.get('seconds', '-')} |")
    if "environment" in results:
        env = results["environment"]
        compiled = "on" if env["compile"] else "off (failed: eager)" if "compile_error" in env else "off (CPU: eager)"
        lines += [
            "",
            f"torch {env['torch']}, transformers {env['transformers']}, tokenizers {env['tokenizers']}, "
            f"Python {env['python']}; torch.compile {compiled}.",
        ]
    for name in ("throughput", "micro_batch"):
        if name in results:
            measured = results[name]
            peak = measured["peak_flops"]
            spec = measured.get("spec_flops")
            lines += [
                "",
                f"## Training step: `train_step.py {' '.join(measured.get('arguments', []))}`",
                "",
                f"{measured['device']}; MFU against the measured bf16 peak ({peak / 1e12:.0f} TFLOP/s) and the "
                f"datasheet's ({spec / 1e12:.0f} TFLOP/s)"
                if peak and spec
                else measured["device"],
                "",
                "| run | tokens/s | MFU (measured peak) | MFU (datasheet) | peak memory GiB |",
                "|---|---:|---:|---:|---:|",
            ]
            lines += [
                f"| {run_name} | {row['tokens_per_second']:,} | {_percent(row['mfu'])} "
                f"| {_percent(row['mfu_vs_spec'])} "
                f"| {row['peak_memory_gib'] if row['peak_memory_gib'] is not None else '-'} |"
                for run_name, row in measured["results"].items()
            ]
    if "data" in results:
        lines += ["", f"## Data\n\n`{json.dumps(results['data'], ensure_ascii=False)}`"]
    recipes = {name: results[name] for name in (REFERENCE_RECIPE, OUR_RECIPE) if name in results}
    if recipes:
        planning = results.get("planning")
        lines += [
            "",
            f"## Recipes at equal GPU seconds ({results.get('seconds_per_recipe')} s of training each)",
            "",
            f"Steps planned at {planning['tokens_per_second']:,} tokens/s ({planning['source']}): both recipes "
            "run the same steps of the same row tokens; 'train s' includes each run's compile."
            if planning
            else "",
            "",
            "| recipe | steps | row tokens (with padding) | train s | steady tokens/s | wall s | final train loss "
            "| answer perplexity | bits/byte | Okapi accuracy |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, recipe in recipes.items():
            lines.append(
                f"| {name} | {recipe['steps']} | {recipe['tokens']:,} | {recipe['train_seconds']} | "
                f"{recipe['steady_tokens_per_second']:,} | {recipe['wall_seconds']} | "
                f"{recipe['final_train_loss']:.3f} | {recipe['perplexity']} | {recipe['bits_per_byte']} | "
                f"{recipe['okapi_accuracy']} (chance {recipe['okapi_chance']}) |"
            )
        for name, recipe in recipes.items():
            lines += ["", f"Samples, {name}:", ""]
            lines += [
                f"- {sample['prompt']} → {sample['answer']!r} (reference: {sample['reference']!r})"
                for sample in recipe["samples"]
            ]
    if "generation" in results:
        lines += [
            "",
            "## Generation (ours, Hugging Face `generate`, fp32 weights, greedy, forced full length)",
            "",
            "| batch | new tokens | tokens/s |",
            "|---:|---:|---:|",
        ]
        lines += [
            f"| {name.split('_')[1]} | {row['new_tokens']} | {row['tokens_per_second']:,} |"
            for name, row in results["generation"].items()
        ]
    if "cpu_weights" in results:
        measured = results["cpu_weights"]
        fp32 = measured["formats"]["fp32"]
        lines += [
            "",
            f"## Weight formats on this machine's CPU (ours, {measured['threads']} threads, `--weights`)",
            "",
            f"Answer perplexity and greedy answers ({measured['examples']} validation examples) against fp32; "
            f"batch 1, {fp32['new_tokens']} new tokens after a {fp32['prompt_tokens']}-token prompt.",
            "",
            "| weights | answer perplexity | identical greedy answers | first token ms | tokens/s | seconds |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {weights} | {row['answer_perplexity']} ({row['perplexity_change']:+.2%}) "
            f"| {row['identical_answers']:.0%} | {row['first_token_ms']} | {row['tokens_per_second']} "
            f"| {row['seconds']} |"
            for weights, row in measured["formats"].items()
        ]
        if measured["skipped"]:
            lines += ["", f"Skipped for the budget: {', '.join(measured['skipped'])}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a copy of the data kit's layout")
    parser.add_argument("--out", type=Path, required=True, help="results.json and results.md go here")
    parser.add_argument("--scale", choices=sorted(SCALES), default="seed")
    parser.add_argument("--commit", default="unknown", help="the commit measured (written into the results)")
    parser.add_argument("--seconds", type=float, help="training seconds per recipe (default: the scale's)")
    parser.add_argument("--budget", type=float, help="seconds for the whole run (default: the scale's)")
    args = parser.parse_args()
    scale = SCALES[args.scale]
    args.out.mkdir(parents=True, exist_ok=True)
    report = Report(
        args.out,
        args.budget or scale["budget"],
        {"commit": args.commit, "date": time.strftime("%Y-%m-%d"), "scale": args.scale},
    )

    env = report.phase("environment", 0, environment) or {"compile": False}
    compile_flag = ["--compile"] if env["compile"] else []
    speed = report.phase(
        "throughput",
        60,
        lambda: throughput(
            scale["throughput"] + compile_flag, args.out, "throughput", timeout=max(1.0, report.left() - 240)
        ),
    )
    data = report.phase("data", 40, lambda: build_data(args.data, scale), keep=False)
    if data is None:
        return
    report.results["data"] = data.stats
    # Without a measured speed, a conservative one: the recipes then train less, never longer.
    tokens_per_second = speed["results"]["minigpt"]["tokens_per_second"] if speed else 50_000
    report.results["planning"] = {
        "tokens_per_second": tokens_per_second,
        "source": "the throughput phase" if speed else "a fallback: the throughput phase failed",
    }
    seconds = min(
        args.seconds or scale["seconds"], (report.left() - 30 - FIRST_RECIPE_OVERHEAD - LATER_RECIPE_OVERHEAD) / 2
    )
    report.results["seconds_per_recipe"] = round(seconds, 1)
    row_length = scale["shape"]["block_size"] + 1
    pad = data.tokenizer.pad_token_id
    choices = load_choice_items(str(args.data / "instrucciones-es" / "opcion-multiple.jsonl"))[: scale["choices"]]

    def reference() -> dict:
        rows = padded_rows(data.train, row_length, pad)
        model, numbers = train_recipe([(rows, 1.0)], seconds, tokens_per_second, scale, env["compile"], data.tokenizer)
        return {**numbers, "padding_fraction": rows.stats["padding_fraction"], **score(model, data, choices, scale)}

    trained = {}

    def ours() -> dict:
        text = pack(encode_documents(data.documents, data.tokenizer, row_length), row_length, pad, "masked")
        answers = pack(data.train, row_length, pad, "masked")
        model, numbers = train_recipe(
            [(text, PRETRAIN_SHARE), (answers, 1 - PRETRAIN_SHARE)],
            seconds,
            tokens_per_second,
            scale,
            env["compile"],
            data.tokenizer,
        )
        trained["model"] = model
        return {**numbers, "padding_fraction": answers.stats["padding_fraction"], **score(model, data, choices, scale)}

    if seconds >= min(MIN_RECIPE_SECONDS, scale["seconds"]):
        report.phase(REFERENCE_RECIPE, seconds + FIRST_RECIPE_OVERHEAD, reference)
        _free_memory()
        report.phase(OUR_RECIPE, seconds + LATER_RECIPE_OVERHEAD, ours)
        _free_memory()
    if "model" in trained:
        report.phase(
            "generation",
            20,
            lambda: generation_speed(trained["model"], data.tokenizer, data.validation, scale["new_tokens"]),
        )
        report.phase(
            "cpu_weights",
            90,
            lambda: cpu_weights(trained.pop("model"), data.tokenizer, data.validation, scale, report.left),
        )
    _free_memory()
    report.phase(
        "micro_batch",
        120,
        lambda: throughput(
            scale["micro_variant"] + compile_flag, args.out, "micro_batch", timeout=max(1.0, report.left())
        ),
    )
    print(markdown(report.results), flush=True)


def _free_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
