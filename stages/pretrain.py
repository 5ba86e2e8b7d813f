"""Stage `pretrain` (optional): plain Spanish text in pretrain.files -> models/pretrained (Hugging Face).

With no files listed it only records that pretraining is off; `train` then starts from
scratch unless train.init_from asks for these weights.
"""

from __future__ import annotations

import os

from minigpt import paths
from minigpt.config import load_params
from minigpt.errors import MiniGPTError, run_main
from minigpt.files import atomic_directory, expand_files, warn_if_untracked, write_json
from minigpt.model import build_config, init_model, save_hf
from minigpt.packing import pack_documents
from minigpt.tokenizer import load_tokenizer, plain_text, read_documents
from minigpt.training import RunOutputs, train_and_save

OUTPUTS = RunOutputs(
    model_dir=paths.PRETRAINED,
    checkpoint_dir=paths.CHECKPOINTS / "pretrain",
    live_dir=None,
    metrics_file=paths.PRETRAIN_METRICS,
    plot_file=paths.PRETRAIN_PLOT,
)
VALIDATION_EVERY = 50  # every 50th document is held out to measure the loss


def main() -> None:
    params = load_params()
    if not params.pretrain.files:
        if int(os.environ.get("RANK", "0")) != 0:  # under a multi-process launcher, one process writes
            return
        with atomic_directory(OUTPUTS.model_dir) as tmp:
            (tmp / "README.md").write_text(
                "Pretraining is off: list plain-text files in pretrain.files "
                "(params.yaml) to pretrain the model before instruction tuning.\n"
            )
        write_json(OUTPUTS.metrics_file, {"enabled": False})
        print("pretrain: no files listed in pretrain.files, nothing to do")
        return
    warn_if_untracked(params.pretrain.files, "pretrain", paths.CORPUS)
    tokenizer = load_tokenizer(paths.TOKENIZER)
    config = build_config(**params.model.model_dump(), tokenizer=tokenizer)
    documents = [text for path in expand_files(params.pretrain.files) for text in read_documents(path, plain_text)]
    if len(documents) < 2:
        raise MiniGPTError("pretrain.files hold fewer than 2 documents: nothing to train and validate on")
    held_out = documents[::VALIDATION_EVERY]
    kept = [text for index, text in enumerate(documents) if index % VALIDATION_EVERY]
    row_length = config.block_size + 1
    train_rows, val_rows = (
        pack_documents(texts, tokenizer, row_length, params.pretrain.packing) for texts in (kept, held_out)
    )
    print(f"pretraining on {len(kept)} documents ({len(train_rows)} rows), {len(held_out)} held out")
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
