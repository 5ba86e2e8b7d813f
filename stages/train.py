"""Stage `train`: data/processed + models/tokenizer (+ models/pretrained) -> models/minigpt (Hugging Face,
with a model card)."""

from __future__ import annotations

from pathlib import Path

from minigpt import paths
from minigpt.config import load_params
from minigpt.data import read_split
from minigpt.errors import MiniGPTError, run_main
from minigpt.model import build_config, from_hf, init_model, save_hf
from minigpt.model_card import render_model_card
from minigpt.packing import pack_instructions
from minigpt.tokenizer import load_tokenizer
from minigpt.training import RunOutputs, train_and_save

OUTPUTS = RunOutputs(
    model_dir=paths.MODEL,
    checkpoint_dir=paths.CHECKPOINTS / "train",
    live_dir=paths.TRAIN_LIVE,
    metrics_file=paths.TRAIN_METRICS,
    plot_file=paths.TRAIN_PLOT,
)


def main() -> None:
    params = load_params()
    tokenizer = load_tokenizer(paths.TOKENIZER)
    config = build_config(**params.model.model_dump(), tokenizer=tokenizer)
    if params.train.init_from == "pretrained":
        if not (paths.PRETRAINED / "config.json").is_file():
            raise MiniGPTError(
                f"train.init_from is 'pretrained' but {paths.PRETRAINED} holds no model: "
                "list corpora in corpus.sources and run 'dvc repro pretrain'"
            )
        model = from_hf(paths.PRETRAINED)
        if model.config != config:
            raise MiniGPTError(
                f"{paths.PRETRAINED} has shape {model.config}, but params.yaml asks for {config}: "
                "rerun 'dvc repro pretrain'"
            )
    else:
        model = init_model(config, params.train.seed)

    row_length = config.block_size + 1
    train_rows, val_rows = (
        pack_instructions(
            read_split(paths.PROCESSED_DATA, split),
            tokenizer,
            row_length,
            params.train.train_on_prompt,
            params.train.packing,
        )
        for split in ("train", "validation")
    )
    print(
        f"packed {train_rows.stats['sequences']} examples into {len(train_rows)} rows "
        f"({train_rows.stats['padding_fraction']:.1%} padding, {train_rows.stats['truncated']} truncated, "
        f"{train_rows.stats['dropped_too_long']} too long)"
    )

    def save(trained, directory: Path, metrics: dict) -> None:
        card = render_model_card(
            params.model, params.train, metrics, vocab_size=len(tokenizer), directory=str(directory)
        )
        save_hf(trained, directory, tokenizer, card=card)

    train_and_save(model, train_rows, val_rows, params.train, params.runtime, OUTPUTS, save)


if __name__ == "__main__":
    run_main(main)
