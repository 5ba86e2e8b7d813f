"""Stage `tokenizer`: train split (+ extra corpus files) -> models/tokenizer + metrics/tokenizer.json."""

from __future__ import annotations

import time

from minigpt import paths
from minigpt.config import load_params
from minigpt.errors import MiniGPTError, run_main
from minigpt.files import expand_files, warn_if_untracked, write_json
from minigpt.plots import grouped_bars
from minigpt.tokenizer import (
    efficiency,
    iter_training_texts,
    load_encoder,
    plain_text,
    read_documents,
    save_pretrained,
    train_bpe,
)

OURS = "minigpt"


def main() -> None:
    params = load_params().tokenizer
    warn_if_untracked(params.extra_files, "tokenizer", paths.CORPUS)
    warn_if_untracked(params.reference_tokenizers.values(), "tokenizer", paths.REFERENCE_TOKENIZERS)
    train_file, validation_file = paths.PROCESSED_DATA / "train.jsonl", paths.PROCESSED_DATA / "validation.jsonl"
    if not train_file.is_file() or not validation_file.is_file():
        raise MiniGPTError(f"{paths.PROCESSED_DATA} has no train/validation split: run 'dvc repro prepare' first")
    # Every input is read and checked before anything is written.
    corpus_files = [train_file, *expand_files(params.extra_files)]
    eval_sets = {"validation": read_documents(validation_file, plain_text)}
    for name, pattern in params.eval_files.items():
        eval_sets[name] = [text for path in expand_files([pattern]) for text in read_documents(path, plain_text)]
    references = {name: load_encoder(path) for name, path in params.reference_tokenizers.items()}

    started = time.perf_counter()
    tokenizer = train_bpe(iter_training_texts(corpus_files), params.vocab_size, params.min_frequency)
    trained_in = time.perf_counter() - started
    save_pretrained(tokenizer, paths.TOKENIZER, params.model_max_length)

    encoders = {OURS: load_encoder(paths.TOKENIZER), **references}
    scores = {
        set_name: {name: efficiency(encode, texts) for name, encode in encoders.items()}
        for set_name, texts in eval_sets.items()
    }
    write_json(paths.TOKENIZER_METRICS, {"vocab_size": tokenizer.get_vocab_size(), "eval": scores})
    grouped_bars(
        paths.TOKENIZER_PLOT,
        {
            set_name: {name: score["chars_per_token"] for name, score in by_tokenizer.items()}
            for set_name, by_tokenizer in scores.items()
        },
        title="Tokenizer efficiency (higher is better)",
        ylabel="characters per token",
    )
    summary = ", ".join(f"{name} {score['chars_per_token']:.2f}" for name, score in scores["validation"].items())
    print(
        f"tokenizer: vocab {tokenizer.get_vocab_size()} trained in {trained_in:.1f}s; validation chars/token: {summary}"
    )


if __name__ == "__main__":
    run_main(main)
