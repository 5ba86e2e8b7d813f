"""Training throughput: the project's real training loop against plain Hugging Face GPT-2,
side by side in one run, on synthetic tokens.

    python benchmarks/train_step.py                      # the default (CPU-sized) model
    python benchmarks/train_step.py --shape seed         # 12 × 12 × 768, context 512, vocab 32k (GPU)
    python benchmarks/train_step.py --shape seed --out results.json
    python benchmarks/train_step.py --shape seed --compile --documents 200 --dropout-row 0.1   # the masked step

Rows: `minigpt` runs `minigpt.training.train_loop` (lean module, fused AdamW, bf16 autocast on a GPU,
torch.compile if --compile) and reads tokens/s from its own telemetry, past the first
(warm-up / compile) interval, and whether the run stayed compiled. With `--documents N` the
rows of one causal sequence are named `minigpt open`, and beside them `minigpt masked sdpa` and
`minigpt masked flex` (per `--attention`, runtime.yaml's setting) train on document-masked rows,
documents of about N tokens, as `packing: masked` gives them; a CPU skips the flex row
(FlexAttention has no backward pass there). `--dropout-row P` and `--micro-row M` add the open
step at dropout P and at M rows per forward pass; `--speedups` the open step with each of
runtime.yaml's `speedups` (compiled_optimizer needs `--compile`), then with all of them.
`hf-reference` is the reference project's style as we assume it (its paper does not say; see
docs/design.md): HF GPT-2 with eager attention, unfused AdamW and fp16 autocast with a gradient
scaler, as `Trainer(fp16=True)` runs it (fp32 on a CPU). `hf-tuned` is HF GPT-2 with SDPA,
fused AdamW, bf16 and torch.compile (GPU only). MFU uses the same FLOP count for all rows
(masked rows included: it counts full causal attention) and the device's bf16 peak (measured
with --measure-peak, else from minigpt.training.PEAK_FLOPS).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minigpt.config import SPEEDUPS, LoopParams, RuntimeParams  # noqa: E402
from minigpt.model import ATTENTION_KINDS, GPT, GPTConfig, flops_per_token, hf_config  # noqa: E402
from minigpt.packing import PackedRows  # noqa: E402
from minigpt.training import device_peak_flops, train_loop  # noqa: E402

SHAPES = {
    "default": GPTConfig(vocab_size=4096, block_size=256, n_layer=4, n_head=4, n_embd=128),
    "seed": GPTConfig(vocab_size=32_000, block_size=512, n_layer=12, n_head=12, n_embd=768),
}


def synthetic_rows(config: GPTConfig, rows: int, mean_document: int = 0) -> PackedRows:
    """Rows of random tokens, each one causal sequence; with `mean_document`, document-masked rows
    (`PackedRows.documents`) of documents whose lengths are exponential around that mean, the last
    cut at the row's end, each document's first token no target (as `minigpt.packing` has it)."""
    generator = torch.Generator().manual_seed(0)
    length = config.block_size + 1
    tokens = torch.randint(0, config.vocab_size, (rows, length), generator=generator)
    targets = torch.ones_like(tokens, dtype=torch.bool)
    if not mean_document:
        return PackedRows(tokens, targets, {})
    # `length` documents of at least one token each: always enough to fill the row.
    ends = torch.empty(rows, length).exponential_(1 / mean_document, generator=generator).ceil().cumsum(dim=1)
    positions = torch.arange(length, dtype=ends.dtype).repeat(rows, 1)
    documents = torch.searchsorted(ends, positions, right=True) + 1
    targets[:, 0] = False
    targets[:, 1:] = documents[:, 1:] == documents[:, :-1]
    return PackedRows(tokens, targets, {}, documents.to(torch.int16))


def measure_peak_flops(device: torch.device) -> float:
    """bf16 matmul FLOP/s actually reached on this GPU (best of a few large products)."""
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    best = 0.0
    for _ in range(5):
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(20):
            a @ b
        torch.cuda.synchronize()
        best = max(best, 20 * 2 * 8192**3 / (time.perf_counter() - started))
    return best


def project_step(
    config: GPTConfig,
    rows_per_step: int,
    micro: int,
    steps: int,
    compile_model: bool,
    mean_document: int = 0,
    attention: str = "sdpa",
    speedups: tuple[str, ...] = (),
) -> tuple[float, bool]:
    """Tokens/s of the project's training loop, from its own telemetry (first interval dropped),
    and whether the run stayed compiled; `mean_document` and `attention` as in `synthetic_rows`
    and runtime.yaml's `attention`."""
    params = LoopParams(
        epochs=1.0,
        micro_batch_size=micro,
        batch_tokens=rows_per_step * config.block_size,
        learning_rate=6e-4,
        min_lr_ratio=0.1,
        warmup_steps=10,
        weight_decay=0.1,
        beta1=0.9,
        beta2=0.95,
        grad_clip=1.0,
        eval_every=0,
        eval_rows=0,
        precision="auto",
        seed=0,
    )
    runtime = RuntimeParams(
        compile=compile_model,
        attention=attention,
        speedups=list(speedups),
        log_every=max(1, steps // 5),
        checkpoint_every=0,
    )
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        result = train_loop(
            GPT(config),
            synthetic_rows(config, rows_per_step * steps, mean_document),
            synthetic_rows(config, micro, mean_document),
            params,
            runtime,
            Path(scratch),
            None,
        )
    speeds = [entry["tokens_per_second"] for entry in result.history if "tokens_per_second" in entry]
    return statistics.median(speeds[1:] if len(speeds) > 1 else speeds), (
        result.summary["compiled"] if compile_model else None
    )


def hf_step(config: GPTConfig, rows_per_step: int, micro: int, steps: int, tuned: bool, device: torch.device) -> float:
    """Tokens/s of a plain Hugging Face GPT-2 training loop."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    hf_cfg = hf_config(config, eos_token_id=0, pad_token_id=1)
    model = AutoModelForCausalLM.from_config(hf_cfg, attn_implementation="sdpa" if tuned else "eager").to(device)
    cuda = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, fused=tuned and cuda)
    dtype = torch.bfloat16 if tuned else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and not tuned)
    forward = torch.compile(model) if tuned and cuda else model
    data = synthetic_rows(config, rows_per_step).tokens[:, :-1].to(device)
    accumulation = rows_per_step // micro

    def step() -> None:
        for start in range(0, rows_per_step, micro):
            batch = data[start : start + micro]
            with torch.autocast(device.type, dtype=dtype, enabled=cuda):
                loss = forward(input_ids=batch, labels=batch).loss / accumulation
            scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(max(2, steps // 5)):  # warm-up (and compilation)
        step()
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return steps * rows_per_step * config.block_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=SHAPES, default="default")
    parser.add_argument("--rows", type=int, default=32, help="rows per optimizer step")
    parser.add_argument(
        "--micro",
        type=int,
        nargs="+",
        default=None,
        help="rows per forward pass (default: --rows); several give one minigpt row each",
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="torch.compile the project's model (GPU)")
    parser.add_argument("--measure-peak", action="store_true", help="measure the bf16 matmul peak (GPU)")
    parser.add_argument(
        "--documents",
        type=int,
        default=0,
        metavar="MEAN_TOKENS",
        help="also measure document-masked rows, documents of about this many tokens, per --attention",
    )
    parser.add_argument(
        "--attention",
        nargs="+",
        choices=ATTENTION_KINDS,
        default=list(ATTENTION_KINDS),
        help="attention paths of the masked rows (runtime.yaml's `attention`)",
    )
    parser.add_argument("--dropout-row", type=float, default=0.0, metavar="P", help="also the open step at dropout P")
    parser.add_argument(
        "--micro-row",
        type=int,
        default=0,
        metavar="M",
        help="also the open step at M rows per forward pass (and per step, where --rows is fewer)",
    )
    parser.add_argument(
        "--speedups",
        nargs="*",
        choices=SPEEDUPS,
        default=[],
        help="also the open step with each of these runtime.yaml speedups, and with all of them",
    )
    parser.add_argument("--skip", nargs="*", default=[], help="rows to leave out by name, e.g. hf-reference hf-tuned")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    config, micros = SHAPES[args.shape], args.micro or [args.rows]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    peak = measure_peak_flops(device) if args.measure_peak and device.type == "cuda" else device_peak_flops(device)
    with torch.device("meta"):  # count parameters without allocating them
        flops = flops_per_token(config, GPT(config).num_parameters())

    # Each runner gives (tokens/s, whether the run stayed compiled; None where not counted).
    step = functools.partial(project_step, steps=args.steps, compile_model=args.compile)
    open_name = "minigpt open" if args.documents else "minigpt"
    runners = {
        (open_name if len(micros) == 1 else f"{open_name} (micro {micro})"): functools.partial(
            step, config, args.rows, micro
        )
        for micro in micros
    }
    for kind in args.attention if args.documents else []:
        runners[f"minigpt masked {kind}"] = functools.partial(
            step, config, args.rows, micros[0], mean_document=args.documents, attention=kind
        )
    # All the speedups together first, then the dropout and micro-batch rows, then each speedup
    # alone: a run cut short keeps the rows that answer the most.
    if len(args.speedups) > 1:
        runners[f"{open_name} + {' + '.join(args.speedups)}"] = functools.partial(
            step, config, args.rows, micros[0], speedups=tuple(args.speedups)
        )
    if args.dropout_row:
        runners[f"{open_name} dropout {args.dropout_row:g}"] = functools.partial(
            step, replace(config, dropout=args.dropout_row), args.rows, micros[0]
        )
    if args.micro_row:
        runners[f"{open_name} (micro {args.micro_row})"] = functools.partial(
            step, config, max(args.rows, args.micro_row), args.micro_row
        )
    for speedup in args.speedups:
        runners[f"{open_name} + {speedup}"] = functools.partial(step, config, args.rows, micros[0], speedups=(speedup,))
    hf = functools.partial(hf_step, config, args.rows, micros[0], args.steps, device=device)
    runners["hf-reference"] = lambda: (hf(tuned=False), None)
    runners["hf-tuned"] = lambda: (hf(tuned=True), None)
    unfit = {}  # rows this device cannot run, and why
    if device.type != "cuda":
        unfit["hf-tuned"] = "bf16 + compile: a GPU configuration"
        unfit["minigpt masked flex"] = "FlexAttention has no backward pass on a CPU"

    device_name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    results = {}
    for name, runner in runners.items():
        if name in args.skip:
            continue
        if name in unfit:
            print(f"{name}: skipped, {unfit[name]}", flush=True)
            continue
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        # Every row compiles its own model: without a reset the rows' graphs pile up on the same
        # code until dynamo's recompile limit, past which later rows would run eagerly.
        torch._dynamo.reset()
        tokens_per_second, compiled = runner()
        results[name] = {
            "tokens_per_second": round(tokens_per_second),
            "mfu": round(flops * tokens_per_second / peak, 4) if peak else None,
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
            "compiled": compiled,
        }
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if args.out:  # after every row: a run stopped for time keeps the rows it measured
            measured = {"shape": args.shape, "device": device_name, "peak_flops": peak, "results": results}
            args.out.write_text(json.dumps(measured, indent=2))

    print(
        f"\n{args.shape} shape ({config}), {args.rows} rows × {config.block_size} tokens per step, "
        f"{device_name}, peak {peak / 1e12:.0f} TFLOP/s"
        if peak
        else f"\n{args.shape} shape, {device_name}"
    )
    if args.documents:
        print(f"masked rows: documents of ~{args.documents} tokens (exponential lengths), attention per row name")
    print("\n| run | tokens/s | vs hf-reference | MFU | peak memory | compiled |\n|---|---:|---:|---:|---:|---|")
    base = results.get("hf-reference", {}).get("tokens_per_second")
    for name, row in results.items():
        ratio = f"{row['tokens_per_second'] / base:.2f}×" if base else "-"
        mfu = f"{row['mfu']:.1%}" if row["mfu"] is not None else "-"
        memory = f"{row['peak_memory_gib']} GiB" if row["peak_memory_gib"] is not None else "-"
        compiled = "-" if row["compiled"] is None else ("yes" if row["compiled"] else "no")
        print(f"| {name} | {row['tokens_per_second']:,} | {ratio} | {mfu} | {memory} | {compiled} |")


if __name__ == "__main__":
    main()
