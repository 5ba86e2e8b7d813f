"""Stage `lora`: models/minigpt + the training examples of lora.categories -> models/lora (PEFT adapter)."""

from __future__ import annotations

from pathlib import Path

from minigpt import paths
from minigpt.config import load_params
from minigpt.data import read_split
from minigpt.errors import MiniGPTError, run_main
from minigpt.lora import add_adapters, category_rows, parameter_counts, save_adapter, save_merged
from minigpt.model import from_hf
from minigpt.packing import pack_instructions
from minigpt.tokenizer import load_tokenizer
from minigpt.training import RunOutputs, train_and_save

OUTPUTS = RunOutputs(
    model_dir=paths.ADAPTER,
    checkpoint_dir=paths.CHECKPOINTS / "lora",
    live_dir=paths.LORA_LIVE,
    metrics_file=paths.LORA_TRAIN_METRICS,
    plot_file=paths.LORA_PLOT,
)


def main() -> None:
    everything = load_params()
    params = everything.lora
    if not (paths.MODEL / "config.json").is_file():
        raise MiniGPTError(f"{paths.MODEL} holds no model: run 'dvc repro train' first")
    tokenizer = load_tokenizer(paths.MODEL)
    base = from_hf(paths.MODEL)
    base_parameters = base.num_parameters()
    model = add_adapters(base, params, params.seed)
    trainable, _ = parameter_counts(model)
    row_length = model.config.block_size + 1
    train_rows, val_rows = (
        pack_instructions(
            category_rows(
                read_split(paths.PROCESSED_DATA, split), params.categories, split, every_category=split == "train"
            ),
            tokenizer,
            row_length,
            train_on_prompt=False,
            layout=params.packing,
        )
        for split in ("train", "validation")
    )
    print(
        f"lora: {trainable:,} trainable parameters ({trainable / base_parameters:.2%} of the base's "
        f"{base_parameters:,}) on {train_rows.stats['sequences']} examples of {', '.join(params.categories)}"
    )

    def save(trained, directory: Path, metrics: dict) -> None:
        save_adapter(trained, directory, params, paths.MODEL, tokenizer)
        if params.merge:
            from transformers import AutoModelForCausalLM

            save_merged(AutoModelForCausalLM.from_pretrained(paths.MODEL), directory, directory / "merged", tokenizer)

    train_and_save(
        model,
        train_rows,
        val_rows,
        params,
        everything.runtime,
        OUTPUTS,
        save,
        extra_metrics={
            "trainable_parameters": trainable,
            "base_parameters": base_parameters,
            "trainable_share": round(trainable / base_parameters, 5),
        },
    )


if __name__ == "__main__":
    run_main(main)
