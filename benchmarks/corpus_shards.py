"""Token shards on this machine: the `corpus` stage's tokenizing throughput and peak memory on
corpora of growing size (the data kit's corpus-es, docs/data-kit.md; its documents shuffled and
repeated), beside the in-memory packing the `pretrain` stage used before shards; then the
pretraining step from shards against the same rows in memory, same shape and steps.

    python benchmarks/corpus_shards.py                               # 100 MB and 1 GB; 60 steps
    python benchmarks/corpus_shards.py --sizes-mb 10 --steps 10      # quicker

Each measurement runs in its own process: the real `stages/corpus.py` in a scratch workspace
(its time and peak RSS from MINIGPT_STAGE_LOG), the old path as `encode_documents` + `pack`.
The tokenizer is a 32,000-token BPE trained on corpus-es (--vocab-size). The step comparison
trains the default model shape on the corpus-es shards' windows and on a PackedRows holding
exactly those rows, alternating, and reports the tokens/s the loop logs after its first interval.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minigpt.errors import STAGE_LOG  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def kit_documents(kit: Path) -> list[str]:
    from minigpt.tokenizer import plain_text, read_documents

    return [text for path in sorted((kit / "corpus-es").glob("*.txt")) for text in read_documents(path, plain_text)]


def write_corpus(path: Path, documents: list[str], size: int, seed: int = 0) -> int:
    """Documents shuffled, then shuffled again for each repetition, until `size` bytes."""
    generator, written = random.Random(seed), 0
    with open(path, "w", encoding="utf-8") as handle:
        while written < size:
            order = list(documents)
            generator.shuffle(order)
            for text in order:
                block = text + "\n\n"
                handle.write(block)
                written += len(block.encode("utf-8"))
                if written >= size:
                    break
    return written


def megabytes(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 1)


def workspace(root: Path, tokenizer: Path, corpus: Path) -> Path:
    """A scratch copy of params.yaml whose corpus is `corpus`, beside the tokenizer."""
    work = root / "work"
    (work / "models").mkdir(parents=True, exist_ok=True)
    if not (work / "models" / "tokenizer").exists():
        (work / "models" / "tokenizer").symlink_to(tokenizer)
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["corpus"]["sources"] = [{"path": str(corpus)}]
    (work / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    return work


def run_corpus_stage(work: Path) -> dict:
    log = work / "stages.jsonl"
    log.unlink(missing_ok=True)
    subprocess.run(
        [sys.executable, str(REPO / "stages" / "corpus.py")],
        cwd=work,
        check=True,
        env=os.environ | {STAGE_LOG: str(log), "PYTHONPATH": str(REPO)},
        stderr=subprocess.DEVNULL,  # the progress bar
    )
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    metrics = json.loads((work / "metrics" / "corpus.json").read_text())
    return {
        "seconds": entry["seconds"],
        "peak_rss_mib": entry["peak_rss_mib"],
        "tokens": sum(metrics["tokens"].values()),
        "tokens_per_second": metrics["tokens_per_second"],
        "shards": sum(metrics["shards"].values()),
    }


def pack_in_memory(corpus: Path, tokenizer: Path, row_length: int) -> None:
    """The pretrain stage's path before shards, in this process: print its time and peak RSS."""
    from minigpt.packing import encode_documents, pack
    from minigpt.tokenizer import load_tokenizer, plain_text, read_documents

    hf = load_tokenizer(tokenizer)
    started = time.perf_counter()
    sequences = encode_documents(read_documents(corpus, plain_text), hf, row_length)
    pack(sequences, row_length, hf.pad_token_id, "masked")
    seconds = time.perf_counter() - started
    tokens = sum(len(ids) for ids, _ in sequences)
    print(
        json.dumps(
            {
                "seconds": round(seconds, 1),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "tokens": tokens,
                "tokens_per_second": round(tokens / seconds),
            }
        )
    )


def step_speeds(shards: Path, tokenizer: Path, steps: int, repeats: int) -> dict[str, list[float]]:
    """Tokens/s of the loop on the shards' windows and on the same rows as PackedRows, alternating."""
    import torch

    from minigpt.config import load_params
    from minigpt.model import build_config, init_model
    from minigpt.packing import ShardWindows
    from minigpt.shards import read_index
    from minigpt.tokenizer import load_tokenizer
    from minigpt.training import train_loop

    params = load_params(REPO / "params.yaml")
    config = build_config(**params.model.model_dump(), tokenizer=load_tokenizer(tokenizer))
    windows = ShardWindows(shards, read_index(shards), "train", config.block_size + 1, params.pretrain.packing)
    in_memory = windows.in_memory(torch.arange(len(windows)))
    loop = params.pretrain.model_copy(update={"max_steps": steps, "eval_every": 0})
    runtime = params.runtime.model_copy(update={"log_every": max(1, steps // 6), "checkpoint_every": 0})
    speeds: dict[str, list[float]] = {"shards": [], "in memory": []}
    for _ in range(repeats):
        for name, rows in (("shards", windows), ("in memory", in_memory)):
            with tempfile.TemporaryDirectory() as checkpoints:
                result = train_loop(init_model(config, 0), rows, rows, loop, runtime, Path(checkpoints), None)
            logged = [entry["tokens_per_second"] for entry in result.history if "tokens_per_second" in entry][1:]
            speeds[name].append(statistics.mean(logged))
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--kit", type=Path, default=REPO.parent / "shared" / "data", help="the data kit's folder (docs/data-kit.md)"
    )
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[100, 1000])
    parser.add_argument("--vocab-size", type=int, default=32_000)
    parser.add_argument("--steps", type=int, default=60, help="steps of each step-speed run")
    parser.add_argument("--repeats", type=int, default=2, help="alternating step-speed runs of each kind")
    parser.add_argument("--out", type=Path, help="also write the numbers as JSON here")
    parser.add_argument(
        "--pack-in-memory", nargs=3, metavar=("CORPUS", "TOKENIZER", "ROW_LENGTH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.pack_in_memory:
        corpus, tokenizer, row_length = args.pack_in_memory
        pack_in_memory(Path(corpus), Path(tokenizer), int(row_length))
        return
    if not (args.kit / "corpus-es").is_dir():
        sys.exit(f"data kit not found at {args.kit}: pass --kit DIR (docs/data-kit.md)")

    from minigpt.config import load_params
    from minigpt.tokenizer import save_pretrained, train_bpe

    row_length = load_params(REPO / "params.yaml").model.block_size + 1
    documents = kit_documents(args.kit)
    results: dict = {"tokenizing": [], "threads": os.cpu_count()}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        tokenizer = root / "tokenizer"
        save_pretrained(train_bpe(documents, args.vocab_size, 2), tokenizer, model_max_length=1024)
        kit_corpus = root / "corpus-es.txt"
        write_corpus(kit_corpus, documents, sum(len(text.encode()) + 2 for text in documents))  # one pass, shuffled

        old = subprocess.run(
            [sys.executable, __file__, "--pack-in-memory", str(kit_corpus), str(tokenizer), str(row_length)],
            check=True,
            capture_output=True,
            text=True,
        )
        measured = json.loads(old.stdout.strip().splitlines()[-1])
        results["tokenizing"].append(
            {"path": "in-memory packing (before shards)", "corpus_mb": megabytes(kit_corpus), **measured}
        )
        measured = run_corpus_stage(workspace(root, tokenizer, kit_corpus))
        results["tokenizing"].append({"path": "corpus stage (shards)", "corpus_mb": megabytes(kit_corpus), **measured})
        kit_shards = root / "kit-shards"  # for the step comparison
        os.replace(root / "work" / "data" / "shards", kit_shards)
        for size in args.sizes_mb:
            corpus = root / f"corpus-{size:g}MB.txt"
            write_corpus(corpus, documents, int(size * 1e6))
            measured = run_corpus_stage(workspace(root, tokenizer, corpus))
            results["tokenizing"].append({"path": "corpus stage (shards)", "corpus_mb": megabytes(corpus), **measured})
            corpus.unlink()
            print(results["tokenizing"][-1], flush=True)
        results["steps"] = step_speeds(kit_shards, tokenizer, args.steps, args.repeats)

    lines = [
        "| path | corpus | tokens | wall time | tokens/s | peak RSS |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {row['path']} | {row['corpus_mb']:,.1f} MB | {row['tokens']:,} | {row['seconds']:,.1f} s | "
        f"{row['tokens_per_second']:,} | {row['peak_rss_mib']:,} MiB |"
        for row in results["tokenizing"]
    ]
    speeds = results["steps"]
    shards, memory = statistics.median(speeds["shards"]), statistics.median(speeds["in memory"])
    lines += [
        "",
        f"Pretraining step, default shape, {args.steps} steps, {args.repeats} alternating runs each (tokens/s):",
        "",
        "| rows | runs | median | shards / in memory |",
        "|---|---|---:|---:|",
        f"| in memory (PackedRows) | {', '.join(f'{value:,.0f}' for value in speeds['in memory'])} | {memory:,.0f} | |",
        f"| shards (ShardWindows) | {', '.join(f'{value:,.0f}' for value in speeds['shards'])} | {shards:,.0f} "
        f"| {shards / memory:.3f} |",
    ]
    print("\n" + "\n".join(lines))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
