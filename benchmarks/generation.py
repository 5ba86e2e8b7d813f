"""Chat speed: time to first token and tokens/s at batch 1, for the trained default model and
for the seed shape (random weights: speed does not depend on what the weights say).

    python benchmarks/generation.py                          # CPU: default model + seed shape
    python benchmarks/generation.py --device cuda --dtype bf16 --compile --out gpu.json

Every answer is forced to its full length (`min_new_tokens`), greedy, with the decoding
arguments the chat and evaluation use (`minigpt.generation`). Rows, side by side:
`dynamic cache` is what the chat runs (HF `generate`, KV cache); `static cache` preallocates
the cache (what torch.compile needs for a fixed shape); `no cache` recomputes the whole prefix
for every token (shows what the KV cache buys; --no-cache-row to include it, it is slow);
`static + compile` wraps the forward in torch.compile (default mode; see RECIPES for why not
"reduce-overhead").
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.train_step import SHAPES  # noqa: E402
from minigpt.decoding import GenerationSettings  # noqa: E402
from minigpt.generation import _generate_arguments, context_length, load_model  # noqa: E402
from minigpt.model import init_model, to_hf  # noqa: E402
from minigpt.template import render_prompt  # noqa: E402

PROMPT = render_prompt("Explica con detalle cómo funciona la fotosíntesis y por qué es importante para la vida.")
RANDOM_PROMPT_TOKENS = 24  # about what PROMPT takes with the project's tokenizer


class TokenTimer:
    """A generate() streamer that notes when each new token arrives."""

    def __init__(self):
        self.times: list[float] = []
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt
            self.prompt_seen = True
            return
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def random_model(shape: str, device: str, dtype: torch.dtype):
    config = SHAPES[shape]
    model = to_hf(init_model(config, seed=0), eos_token_id=0, pad_token_id=1).to(device=device, dtype=dtype).eval()
    prompt = torch.randint(2, config.vocab_size, (1, RANDOM_PROMPT_TOKENS), generator=torch.Generator().manual_seed(0))
    return model, SimpleTokenizer(), prompt


class SimpleTokenizer:
    """What `_generate_arguments` reads from a tokenizer, for models without one."""

    eos_token_id, pad_token_id = 0, 1


def trained_model(directory: Path, device: str, dtype: torch.dtype):
    model, tokenizer = load_model(directory, device)
    ids = tokenizer(PROMPT, add_special_tokens=False, verbose=False)["input_ids"]
    prompt = torch.tensor([ids[-(context_length(model) // 2) :]])  # room for the answer in a small context
    return model.to(dtype), tokenizer, prompt


def time_answer(model, tokenizer, prompt: torch.Tensor, new_tokens: int, extra: dict) -> tuple[float, float, int]:
    """(seconds to the first token, decode tokens/s after it, tokens generated)."""
    settings = GenerationSettings(max_new_tokens=new_tokens)
    arguments = _generate_arguments(model, tokenizer, prompt, torch.ones_like(prompt), settings, context_length(model))
    timer = TokenTimer()
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    with torch.inference_mode():
        model.generate(**arguments, min_new_tokens=new_tokens, streamer=timer, **extra)
    first, last = timer.times[0], timer.times[-1]
    return first - started, (len(timer.times) - 1) / (last - first), len(timer.times)


def bench(model, tokenizer, prompt: torch.Tensor, new_tokens: int, variants: list[str], repeats: int) -> list[dict]:
    new_tokens = min(new_tokens, context_length(model) - prompt.shape[1])  # the default model's context is 256
    rows = []
    forward = model.forward
    for variant in variants:
        extra = (
            {}
            if variant == "dynamic cache"
            else {"use_cache": False}
            if variant == "no cache"
            else {"cache_implementation": "static"}
        )
        model.forward = torch.compile(forward) if variant == "static + compile" else forward
        time_answer(model, tokenizer, prompt, min(new_tokens, 16), extra)  # warm-up (and compilation)
        runs = [time_answer(model, tokenizer, prompt, new_tokens, extra) for _ in range(repeats)]
        rows.append(
            {
                "variant": variant,
                "new_tokens": runs[0][2],
                "first_token_ms": round(1000 * statistics.median(r[0] for r in runs), 1),
                "tokens_per_second": round(statistics.median(r[1] for r in runs), 1),
            }
        )
    model.forward = forward
    baseline = rows[0]["tokens_per_second"]
    for row in rows:
        row["speed_vs_dynamic"] = round(row["tokens_per_second"] / baseline, 2)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        type=Path,
        default=Path("models/minigpt"),
        help="trained model directory (random weights of the default shape if absent)",
    )
    parser.add_argument("--shapes", nargs="+", default=["default", "seed"], choices=sorted(SHAPES))
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--compile", action="store_true", help="add a static cache + torch.compile row")
    parser.add_argument("--no-cache-row", action="store_true", help="add a row without the KV cache")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    args = parser.parse_args()
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    variants = (
        ["dynamic cache", "static cache"] + ["static + compile"] * args.compile + ["no cache"] * args.no_cache_row
    )
    print(
        f"device {args.device}, {args.dtype}, batch 1, {torch.get_num_threads()} CPU threads, median of {args.repeats}",
        flush=True,
    )
    results = {}
    for shape in args.shapes:
        if shape == "default" and (args.model / "config.json").is_file():
            name, loaded = f"default ({args.model}, trained)", trained_model(args.model, args.device, dtype)
        else:
            name, loaded = f"{shape} (random weights)", random_model(shape, args.device, dtype)
        parameters = sum(p.numel() for p in loaded[0].parameters())
        results[name] = bench(*loaded, new_tokens=args.new_tokens, variants=variants, repeats=args.repeats)
        print(f"\n{name}: {parameters / 1e6:.1f}M parameters, prompt {loaded[2].shape[1]} tokens")
        print(f"{'variant':<18} {'new tokens':>10} {'first token ms':>15} {'tokens/s':>9} {'× dynamic':>10}")
        for row in results[name]:
            print(
                f"{row['variant']:<18} {row['new_tokens']:>10} {row['first_token_ms']:>15} "
                f"{row['tokens_per_second']:>9} {row['speed_vs_dynamic']:>10}",
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps({"device": args.device, "dtype": args.dtype, "results": results}, indent=2))


if __name__ == "__main__":
    main()
