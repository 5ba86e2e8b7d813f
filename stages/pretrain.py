"""Stage `pretrain` (optional): the token shards of `corpus` -> models/pretrained (Hugging Face).

Windows of the corpus are read from the shards through memory maps, never copied into
memory. With pretraining off (no corpus.sources) it only records so; `train` then starts from
scratch unless train.init_from asks for these weights.
"""

from __future__ import annotations

import os

from minigpt import paths
from minigpt.config import load_params
from minigpt.errors import MiniGPTError, run_main
from minigpt.files import atomic_directory, write_json
from minigpt.model import build_config, init_model, save_hf
from minigpt.packing import ShardWindows
from minigpt.shards import check_tokenizer, read_index
from minigpt.tokenizer import load_tokenizer
from minigpt.training import RunOutputs, train_and_save

OUTPUTS = RunOutputs(
    model_dir=paths.PRETRAINED,
    checkpoint_dir=paths.CHECKPOINTS / "pretrain",
    live_dir=None,
    metrics_file=paths.PRETRAIN_METRICS,
    plot_file=paths.PRETRAIN_PLOT,
)


def main() -> None:
    params = load_params()
    index = read_index(paths.SHARDS)
    if index["enabled"] != bool(params.corpus.sources):
        raise MiniGPTError(
            f"{paths.SHARDS} {'holds' if index['enabled'] else 'has no'} shards but corpus.sources is "
            f"{'empty' if index['enabled'] else 'not'}: run 'dvc repro corpus' first"
        )
    if not index["enabled"]:
        if int(os.environ.get("RANK", "0")) != 0:  # under a multi-process launcher, one process writes
            return
        with atomic_directory(OUTPUTS.model_dir) as tmp:
            (tmp / "README.md").write_text(
                "Pretraining is off: list corpora in corpus.sources (params.yaml) to pretrain the "
                "model before instruction tuning.\n"
            )
        write_json(OUTPUTS.metrics_file, {"enabled": False})
        print("pretrain: corpus.sources is empty, nothing to do")
        return
    tokenizer = load_tokenizer(paths.TOKENIZER)
    check_tokenizer(index, paths.TOKENIZER, paths.SHARDS)
    config = build_config(**params.model.model_dump(), tokenizer=tokenizer)
    train_rows, val_rows = (
        ShardWindows(paths.SHARDS, index, split, config.block_size + 1, params.pretrain.packing)
        for split in ("train", "validation")
    )
    print(
        f"pretraining on {train_rows.stats['tokens']:,} tokens ({len(train_rows):,} rows of {config.block_size}), "
        f"{val_rows.stats['tokens']:,} held out"
    )
    train_and_save(
        init_model(config, params.pretrain.seed),
        train_rows,
        val_rows,
        params.pretrain,
        params.runtime,
        OUTPUTS,
        lambda model, directory, metrics: save_hf(model, directory, tokenizer),
        extra_metrics={"enabled": True},
    )


if __name__ == "__main__":
    run_main(main)
