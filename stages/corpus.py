"""Stage `corpus`: corpus.sources (local files or hub datasets) -> data/shards (token shards,
read by `pretrain`) + metrics/corpus.json.

The corpus is tokenized once, by models/tokenizer, in a stage of its own: changing the model
or the pretraining params never tokenizes it again, and a second machine `dvc pull`s the
shards instead. With no sources listed it records that pretraining is off.
"""

from __future__ import annotations

import time

from minigpt import paths
from minigpt.config import load_params
from minigpt.errors import MiniGPTError, run_main
from minigpt.files import atomic_directory, warn_if_untracked, write_json
from minigpt.shards import FORMAT, INDEX, SPLITS


def main() -> None:
    params = load_params().corpus
    if not params.sources:
        with atomic_directory(paths.SHARDS) as tmp:
            write_json(tmp / INDEX, {"format": FORMAT, "enabled": False})
        write_json(paths.CORPUS_METRICS, {"enabled": False})
        print("corpus: no sources in corpus.sources: pretraining is off")
        return
    from minigpt.corpus import ShardBuilder, local_inputs  # (imports the tokenizers and numpy: only when used)

    warn_if_untracked(local_inputs(params.sources), "corpus", paths.CORPUS, paths.RAW_DATA)
    if not (paths.TOKENIZER / "tokenizer.json").is_file():
        raise MiniGPTError(f"no tokenizer in {paths.TOKENIZER}: run 'dvc repro tokenizer' first")
    started = time.perf_counter()
    builder = ShardBuilder(params, paths.TOKENIZER, paths.PARTIAL_SHARDS)
    builder.run()
    index = builder.finish(paths.SHARDS)
    seconds = time.perf_counter() - started
    splits = index["splits"]
    tokenized = builder.tokens - builder.resumed_at
    write_json(
        paths.CORPUS_METRICS,
        {
            "enabled": True,
            "tokens": {split: splits[split]["tokens"] for split in SPLITS},
            "documents": {split: splits[split]["documents"] for split in SPLITS},
            "shards": {split: len(splits[split]["shards"]) for split in SPLITS},
            "dtype": index["dtype"],
            "max_tokens": index["max_tokens"],
            "budget_reached": index["budget_reached"],
            "sources": index["sources"],
            "seconds": round(seconds, 1),
            "tokens_per_second": round(tokenized / seconds),
        },
    )
    print(
        f"corpus: {builder.tokens:,} tokens ({splits['validation']['tokens']:,} held out) in "
        f"{len(splits['train']['shards'])} + {len(splits['validation']['shards'])} shards; "
        f"{tokenized:,} tokenized in {seconds:.1f}s ({tokenized / seconds:,.0f} tokens/s)"
    )


if __name__ == "__main__":
    run_main(main)
