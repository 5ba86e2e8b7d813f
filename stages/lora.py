"""Stage `lora`: models/minigpt + the training examples of lora.categories -> models/lora_ciencia_prog (PEFT)."""

from __future__ import annotations

from pathlib import Path

from minigpt.config import load_params
from minigpt.data import read_split
from minigpt.errors import MiniGPTError, run_main
from minigpt.lora import add_adapters, category_rows, parameter_counts, save_adapter, save_merged
from minigpt.model import from_hf
from minigpt.packing import pack_instructions
from minigpt.tokenizer import load_tokenizer
from minigpt.training import RunOutputs, train_and_save

DATA_DIR = Path("data/processed")
BASE_DIR = Path("models/minigpt")
OUTPUTS = RunOutputs(
    model_dir=Path("models/lora_ciencia_prog"),
    checkpoint_dir=Path("models/checkpoints/lora"),
    live_dir=Path("dvclive/lora"),
    metrics_file=Path("metrics/lora_train.json"),
    plot_file=Path("plots/lora_curves.png"),
)


def main() -> None:
    everything = load_params()
    params = everything.lora
    if not (BASE_DIR / "config.json").is_file():
        raise MiniGPTError(f"{BASE_DIR} holds no model: run 'dvc repro train' first")
    tokenizer = load_tokenizer(BASE_DIR)
    base = from_hf(BASE_DIR)
    base_parameters = base.num_parameters()
    model = add_adapters(base, params, params.seed)
    trainable, _ = parameter_counts(model)
    row_length = model.config.block_size + 1
    train_rows, val_rows = (
        pack_instructions(
            category_rows(read_split(DATA_DIR, split), params.categories, split, every_category=split == "train"),
            tokenizer,
            row_length,
            train_on_prompt=False,
        )
        for split in ("train", "validation")
    )
    print(
        f"lora: {trainable:,} trainable parameters ({trainable / base_parameters:.2%} of the base's "
        f"{base_parameters:,}) on {train_rows.stats['sequences']} examples of {', '.join(params.categories)}"
    )

    def save(trained, directory: Path, metrics: dict) -> None:
        save_adapter(trained, directory, params, BASE_DIR, tokenizer)
        if params.merge:
            from transformers import AutoModelForCausalLM

            save_merged(AutoModelForCausalLM.from_pretrained(BASE_DIR), directory, directory / "merged", tokenizer)

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
