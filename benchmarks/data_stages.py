"""Time the `prepare` and `tokenizer` stages on the real Spanish data kit (docs/data-kit.md).

Runs the real stage scripts in a scratch directory on ../shared/data (or --kit DIR):
`prepare` on --examples instruction examples, then a --vocab-size BPE trained on the train
split plus the plain-text corpus (as `corpus.sources`, 2 % of its documents held out),
compared with GPT-2's tokenizer on the validation split and on the held-out corpus documents.

    python benchmarks/data_stages.py                    # 60k examples, 32k vocab
    python benchmarks/data_stages.py --examples 0       # every instruction in the kit
    python benchmarks/data_stages.py --examples 5000 --vocab-size 8000
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def run_stage(name: str, workdir: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "stages" / f"{name}.py")], cwd=workdir, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--kit", type=Path, default=REPO.parent / "shared" / "data", help="the data kit's folder (docs/data-kit.md)"
    )
    parser.add_argument("--examples", type=int, default=60_000, help="0 = the whole kit (226k)")
    parser.add_argument("--vocab-size", type=int, default=32_000)
    args = parser.parse_args()
    kit = args.kit.resolve()
    if not kit.is_dir():
        sys.exit(f"data kit not found at {kit}: pass --kit DIR (docs/data-kit.md)")

    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        # The multiple-choice items first, then translation pairs up to --examples in all.
        files = [
            kit / "instrucciones-es" / "opcion-multiple.jsonl",
            *sorted((kit / "instrucciones-es").glob("traduccion-*.jsonl")),
        ]
        lines = itertools.islice(
            (line for path in files for line in path.open(encoding="utf-8")), args.examples or None
        )
        (workdir / "data" / "raw").mkdir(parents=True)
        (workdir / "data" / "raw" / "kit.jsonl").write_text("".join(lines), encoding="utf-8")
        params["prepare"]["sources"] = [{"kind": "jsonl", "path": "data/raw/kit.jsonl"}]
        params["prepare"].update(validation_fraction=0.05, split_by="prompt")  # few wordings, many inputs
        params["corpus"].update(sources=[{"path": str(kit / "corpus-es" / "*.txt")}], validation_fraction=0.02)
        params["tokenizer"].update(
            vocab_size=args.vocab_size,
            corpus_chars=100_000_000,  # all of it
            reference_tokenizers={"gpt2": str(kit / "tokenizers" / "gpt2")},
        )
        (workdir / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")

        prepare_seconds = run_stage("prepare", workdir)
        tokenizer_seconds = run_stage("tokenizer", workdir)
        data = json.loads((workdir / "metrics" / "data.json").read_text(encoding="utf-8"))
        scores = json.loads((workdir / "metrics" / "tokenizer.json").read_text(encoding="utf-8"))["eval"]

    print("\n| stage | input | wall time |\n|---|---|---:|")
    print(
        f"| prepare | {data['examples']['read']:,} examples -> {data['examples']['kept']:,} kept "
        f"| {prepare_seconds:.1f} s |"
    )
    print(
        f"| tokenizer | {args.vocab_size:,} vocab on train split + corpus-es, then scored | {tokenizer_seconds:.1f} s |"
    )
    print("\n| eval set | tokenizer | chars/token | tokens/word | tokens |\n|---|---|---:|---:|---:|")
    for set_name, by_tokenizer in scores.items():
        for name, score in by_tokenizer.items():
            print(
                f"| {set_name} | {name} | {score['chars_per_token']:.2f} | {score['tokens_per_word']:.2f} "
                f"| {score['tokens']:,} |"
            )
        if "gpt2" in by_tokenizer:
            ratio = by_tokenizer["minigpt"]["chars_per_token"] / by_tokenizer["gpt2"]["chars_per_token"]
            print(f"| {set_name} | minigpt vs gpt2 | {ratio:.2f}x chars/token ({(ratio - 1) * 100:+.0f} %) | | |")


if __name__ == "__main__":
    main()
