"""llama.cpp on the GGUF export (`python -m minigpt export --gguf`) beside the project's own CPU
paths: does it answer the same, and how fast, side by side in one run.

    PYTHONPATH=/work/llama-cpp-target python benchmarks/llama_cpp.py
    PYTHONPATH=/work/llama-cpp-target python benchmarks/llama_cpp.py --shapes default --runtimes fp32 f16 --no-speed

llama.cpp comes from llama-cpp-python, which compiles it from source when it installs (about
15–20 minutes on 2 cores). Keep it out of the project's environment: install it, without its
dependencies (the project's numpy serves), into a folder of its own, and put that folder on
PYTHONPATH as above:

    CMAKE_BUILD_PARALLEL_LEVEL=2 pip install --no-deps --target /work/llama-cpp-target \
        llama-cpp-python==0.3.36 diskcache

Shapes: `default` is the trained models/minigpt (or --model); `seed` is the 110M seed shape with
random weights and the project's tokenizer widened to 32,000 tokens with unused ones (speed
depends on the shape, not on what the weights say). Each shape is exported to GGUF f16 and q8_0,
and every runtime (`fp32` and `int8`: transformers, as `--weights` runs it; `f16` and `q8_0`:
llama.cpp on the GGUF file) runs in its own process:

- Agreement: each of PROMPTS, rendered with the project's template, is tokenized (llama.cpp's
  ids against the tokenizer's) and answered greedily, `--answer-tokens` tokens or up to
  <|endoftext|>; each answer is compared with fp32's on the same weights. f16 must agree
  exactly: the script exits with 1 when it does not (the export would be wrong). q8_0 and int8
  round the weights to 8 bits, so near-ties can flip: the table counts the prompts whose first
  token and whose whole answer agree.
- Speed: batch 1, `--threads` threads, `--new-tokens` tokens forced after a `--prompt-tokens`
  prompt (capped to leave room for them in the context), the same ids for every runtime; median
  of `--repeats` of the first-token time and of the decoding tokens/s after it.

llama.cpp runs without extra buffer types (`llama-cli --no-repack`): on x86 those hold only the
AMX kernels (no Q8_0 or F16 repacking), which need a server CPU and crashed here on prompts of
more than one token; a laptop runs the same kernels as these rows.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This file is named like the package it drives: its folder, which Python puts first on the path,
# would shadow llama_cpp. The repository root takes its place.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

# torch is imported only where transformers runs: a llama.cpp process holds llama.cpp alone, and its
# peak memory is llama.cpp's.
import numpy as np  # noqa: E402

from minigpt import paths  # noqa: E402
from minigpt.gguf_export import export_gguf  # noqa: E402
from minigpt.template import render_prompt  # noqa: E402
from minigpt.tokenizer import load_tokenizer  # noqa: E402

PROMPTS = [
    render_prompt("¿Qué es la fotosíntesis?"),
    render_prompt("Escribe un poema corto sobre el mar."),
    render_prompt("Dame tres consejos para dormir mejor."),
    render_prompt("Explica qué es un número primo con un ejemplo."),
    render_prompt("Resume el texto en una frase.", "El río pasa por el pueblo y llega al mar después de muchos días."),
    render_prompt("Traduce al inglés la siguiente frase.", "Los gatos duermen en la casa de la abuela."),
]
RUNTIME_NAMES = {
    "fp32": "transformers fp32",
    "int8": "transformers int8",
    "f16": "llama.cpp f16",
    "q8_0": "llama.cpp q8_0",
}
LLAMA_CPP = ("f16", "q8_0")  # GGUF types, run by llama.cpp; the other runtimes are `--weights` of transformers
SHAPES = ("default", "seed")  # benchmarks/train_step.py's


class LlamaCpp:
    """A GGUF file in llama.cpp through llama-cpp-python's C API; greedy is the argmax of its logits."""

    def __init__(self, path: Path, threads: int):
        import llama_cpp

        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # its load report is long
        self.api = llama_cpp
        llama_cpp.llama_backend_init()
        model_params = llama_cpp.llama_model_default_params()
        model_params.use_extra_bufts = False  # see the module's docstring
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), model_params)
        if self.model is None:
            raise RuntimeError(f"llama.cpp could not load {path}")
        context_params = llama_cpp.llama_context_default_params()
        context_params.n_ctx = context_params.n_batch = llama_cpp.llama_model_n_ctx_train(self.model)
        context_params.n_threads = context_params.n_threads_batch = threads
        self.context = llama_cpp.llama_init_from_model(self.model, context_params)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.vocab_size = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.eos = llama_cpp.llama_vocab_eos(self.vocab)

    def tokenize(self, text: str) -> list[int]:
        """The ids of `text`, special tokens parsed, nothing added at the start."""
        data = text.encode()
        ids = (self.api.llama_token * (len(data) + 1))()
        count = self.api.llama_tokenize(self.vocab, data, len(data), ids, len(ids), False, True)
        return list(ids[:count])

    def greedy(self, prompt: list[int], new_tokens: int, stop: bool = True) -> tuple[list[int], list[float]]:
        """Up to `new_tokens` greedy tokens after `prompt` (ending with <|endoftext|> if `stop`),
        and the seconds from the start at which each came."""
        self.api.llama_memory_clear(self.api.llama_get_memory(self.context), True)
        tokens: list[int] = []
        times: list[float] = []
        feed = prompt
        started = time.perf_counter()
        while len(tokens) < new_tokens:
            ids = (self.api.llama_token * len(feed))(*feed)
            if self.api.llama_decode(self.context, self.api.llama_batch_get_one(ids, len(feed))) != 0:
                raise RuntimeError("llama_decode failed")
            logits = np.ctypeslib.as_array(self.api.llama_get_logits_ith(self.context, -1), shape=(self.vocab_size,))
            tokens.append(int(logits.argmax()))
            times.append(time.perf_counter() - started)
            if stop and tokens[-1] == self.eos:
                break
            feed = tokens[-1:]
        return tokens, times


def measure(runtime: str, model_dir: Path, gguf: Path | None, plan: dict, args: argparse.Namespace) -> dict:
    """One runtime in this process: prompt ids, greedy answers, speed and peak memory."""
    run = measure_llama_cpp if runtime in LLAMA_CPP else measure_transformers
    prompts, answers, timings = run(runtime, model_dir, gguf, plan, args)
    row = {"prompts": prompts, "answers": answers}
    if timings:  # (first-token seconds, decoding tokens/s, tokens) of each repeat
        row |= {
            "new_tokens": timings[0][2],
            "first_token_ms": round(1000 * statistics.median(timing[0] for timing in timings), 1),
            "tokens_per_second": round(statistics.median(timing[1] for timing in timings), 1),
        }
    return row | {"peak_rss_mib": peak_rss_mib()}


def measure_llama_cpp(runtime: str, model_dir: Path, gguf: Path, plan: dict, args: argparse.Namespace):
    llama = LlamaCpp(gguf, args.threads)
    prompts = [llama.tokenize(prompt) for prompt in PROMPTS]
    answers = [llama.greedy(*fitted(prompt, plan, args))[0] for prompt in prompts]
    timings = []
    if plan["speed_prompt"]:
        llama.greedy(plan["speed_prompt"], 8, stop=False)  # warm-up
        for _ in range(args.repeats):
            times = llama.greedy(plan["speed_prompt"], args.new_tokens, stop=False)[1]
            timings.append((times[0], (len(times) - 1) / (times[-1] - times[0]), len(times)))
    return prompts, answers, timings


def measure_transformers(runtime: str, model_dir: Path, gguf: None, plan: dict, args: argparse.Namespace):
    import torch

    from benchmarks.generation import time_answer
    from minigpt.generation import load_model

    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(model_dir, "cpu", weights=runtime)
    prompts = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in PROMPTS]
    answers = []
    for prompt, new_tokens in (fitted(prompt, plan, args) for prompt in prompts):
        ids = torch.tensor([prompt])
        with torch.inference_mode():
            output = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=new_tokens,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        answers.append(output[0, len(prompt) :].tolist())
    timings = []
    if plan["speed_prompt"]:
        prompt = torch.tensor([plan["speed_prompt"]])
        time_answer(model, tokenizer, prompt, 8, {})  # warm-up
        timings = [time_answer(model, tokenizer, prompt, args.new_tokens, {}) for _ in range(args.repeats)]
    return prompts, answers, timings


def fitted(prompt: list[int], plan: dict, args: argparse.Namespace) -> tuple[list[int], int]:
    """The prompt and answer length that fit the model's context: --answer-tokens (at most half the
    context), after the prompt's last tokens (as the project's generation cuts an over-long prompt)."""
    answer = min(args.answer_tokens, plan["context"] // 2)
    return prompt[-(plan["context"] - answer) :], answer


def peak_rss_mib() -> int:
    """This process's peak resident memory since it started its program. (Not getrusage's: that
    one keeps the peak of the parent it was forked from, which held the seed model.)"""
    status = Path("/proc/self/status").read_text(encoding="utf-8")
    return round(int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024)


def seed_model(directory: Path) -> Path:
    """The 110M seed shape, random weights, with the project's tokenizer widened to its 32,000 tokens."""
    from benchmarks.train_step import SHAPES as CONFIGS
    from minigpt.model import init_model, save_hf

    config = CONFIGS["seed"]
    tokenizer = load_tokenizer(paths.TOKENIZER)
    tokenizer.add_tokens([f"<|unused_{token_id}|>" for token_id in range(len(tokenizer), config.vocab_size)])
    save_hf(init_model(config, seed=0), directory, tokenizer)
    return directory


def speed_prompt(model_dir: Path, length: int, room: int) -> list[int]:
    """`length` ids of the prompts' text, fewer when the context has less `room`."""
    ids = load_tokenizer(model_dir)("".join(PROMPTS) * 20, add_special_tokens=False)["input_ids"]
    return ids[: min(length, room)]


def compare(row: dict, reference: dict) -> dict:
    """`row`'s agreement with fp32's: prompt ids, first tokens and whole answers."""
    answers = list(zip(row["answers"], reference["answers"]))
    return {
        "prompt_ids_equal": sum(a == b for a, b in zip(row["prompts"], reference["prompts"])),
        "first_token_equal": sum(a[:1] == b[:1] for a, b in answers),
        "answer_equal": sum(a == b for a, b in answers),
        "agreeing_tokens": [
            next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b))) for a, b in answers
        ],
        "exact": row["prompts"] == reference["prompts"] and row["answers"] == reference["answers"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["default", "seed"], choices=SHAPES)
    parser.add_argument("--model", type=Path, default=paths.MODEL, help="the default shape's model directory")
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIME_NAMES), choices=list(RUNTIME_NAMES))
    parser.add_argument("--answer-tokens", type=int, default=32)
    parser.add_argument("--prompt-tokens", type=int, default=200)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-speed", action="store_true", help="agreement only")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    parser.add_argument("--one", nargs=5, metavar=("RUNTIME", "MODEL", "GGUF", "PLAN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child process: one runtime
        runtime, model_dir, gguf, plan, out = args.one
        plan = json.loads(Path(plan).read_text(encoding="utf-8"))
        row = measure(runtime, Path(model_dir), Path(gguf) if gguf != "-" else None, plan, args)
        Path(out).write_text(json.dumps(row), encoding="utf-8")
        return
    if "fp32" not in args.runtimes:
        parser.error("--runtimes needs fp32: every runtime's answers are compared with fp32's")
    if any(runtime in LLAMA_CPP for runtime in args.runtimes) and importlib.util.find_spec("llama_cpp") is None:
        sys.exit(
            "llama_cpp (llama-cpp-python) is not importable: build it into a folder of its own and put that folder "
            "on PYTHONPATH (this file's docstring shows how)"
        )

    print(f"CPU, {args.threads} threads, batch 1, median of {args.repeats}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        results = [row for shape in args.shapes for row in run_shape(shape, Path(scratch), args)]
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if any(row["runtime"] == "f16" and not row["exact"] for row in results):
        sys.exit("llama.cpp's f16 answers differ from transformers' on the same weights: the GGUF export is wrong")


def run_shape(shape: str, scratch: Path, args: argparse.Namespace) -> list[dict]:
    """Every runtime on one shape, each in a process of its own, compared with fp32 (run first)."""
    model_dir = args.model if shape == "default" else seed_model(scratch / "seed")
    plan = scratch / f"{shape}-plan.json"
    context = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))["n_positions"]
    speed = [] if args.no_speed else speed_prompt(model_dir, args.prompt_tokens, context - args.new_tokens)
    plan.write_text(json.dumps({"context": context, "speed_prompt": speed}), encoding="utf-8")
    rows: list[dict] = []
    for runtime in ["fp32", *(runtime for runtime in args.runtimes if runtime != "fp32")]:
        gguf = export_gguf(model_dir, scratch / f"{shape}-{runtime}.gguf", runtime) if runtime in LLAMA_CPP else None
        out = scratch / f"{shape}-{runtime}.json"
        child = [sys.executable, __file__, "--one", runtime, str(model_dir), str(gguf or "-"), str(plan), str(out)]
        subprocess.run(
            child + [f"--{name.replace('_', '-')}={getattr(args, name)}" for name in CHILD_OPTIONS], check=True
        )
        row = json.loads(out.read_text(encoding="utf-8")) | {"shape": shape, "runtime": runtime}
        row |= compare(row, rows[0] if rows else row)
        if gguf:
            row["file_mib"] = round(gguf.stat().st_size / 2**20, 1)
        if speed:
            row["speed_vs_fp32"] = round(row["tokens_per_second"] / (rows or [row])[0]["tokens_per_second"], 2)
        rows.append(row)
        print(f"{shape} {runtime}: tokens agreeing with fp32's answers {row['agreeing_tokens']}", flush=True)
    return rows


def table(results: list[dict]) -> str:
    """The results as a Markdown table: agreement with fp32 out of len(PROMPTS), then speed."""
    n = len(PROMPTS)
    lines = [
        "| shape | runtime | prompt ids equal | first token equal | answer equal | first token | tokens/s | × fp32 "
        "| peak RSS | file |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results:
        speed = (
            f"{row['first_token_ms']} ms | {row['tokens_per_second']} | {row['speed_vs_fp32']:.2f}"
            if "tokens_per_second" in row
            else "– | – | –"
        )
        file = f"{row['file_mib']} MiB" if "file_mib" in row else "–"
        lines.append(
            f"| {row['shape']} | {RUNTIME_NAMES[row['runtime']]} | {row['prompt_ids_equal']}/{n} "
            f"| {row['first_token_equal']}/{n} | {row['answer_equal']}/{n} | {speed} "
            f"| {row['peak_rss_mib']:,} MiB | {file} |"
        )
    return "\n".join(lines)


CHILD_OPTIONS = ("answer_tokens", "prompt_tokens", "new_tokens", "repeats", "threads")

if __name__ == "__main__":
    main()
