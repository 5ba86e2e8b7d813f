"""Stage `tokenizer`: train split (+ a sample of the corpus) -> models/tokenizer + metrics/tokenizer.json."""

from __future__ import annotations

import itertools
import time

from minigpt import paths
from minigpt.config import load_params
from minigpt.corpus import CorpusSample, local_inputs
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
HELD_OUT = "corpus (held out)"  # the corpus's validation documents: text the tokenizer never saw


def main() -> None:
    everything = load_params()
    params = everything.tokenizer
    warn_if_untracked(local_inputs(everything.corpus.sources), "tokenizer", paths.CORPUS, paths.RAW_DATA)
    warn_if_untracked(params.reference_tokenizers.values(), "tokenizer", paths.REFERENCE_TOKENIZERS)
    train_file, validation_file = paths.PROCESSED_DATA / "train.jsonl", paths.PROCESSED_DATA / "validation.jsonl"
    if not train_file.is_file() or not validation_file.is_file():
        raise MiniGPTError(f"{paths.PROCESSED_DATA} has no train/validation split: run 'dvc repro prepare' first")
    # Every input is read and checked before anything is written.
    eval_sets = {"validation": read_documents(validation_file, plain_text)}
    for name, pattern in params.eval_files.items():
        eval_sets[name] = [text for path in expand_files([pattern]) for text in read_documents(path, plain_text)]
    references = {name: load_encoder(path) for name, path in params.reference_tokenizers.items()}

    started = time.perf_counter()
    sample = CorpusSample(everything.corpus, params.corpus_chars)
    learned_from = itertools.chain(iter_training_texts([train_file]), sample)
    tokenizer = train_bpe(learned_from, params.vocab_size, params.min_frequency)
    trained_in = time.perf_counter() - started
    if sample.held_out:
        eval_sets[HELD_OUT] = sample.held_out
    save_pretrained(tokenizer, paths.TOKENIZER, params.model_max_length)

    encoders = {OURS: load_encoder(paths.TOKENIZER), **references}
    scores = {
        set_name: {name: efficiency(encode, texts) for name, encode in encoders.items()}
        for set_name, texts in eval_sets.items()
    }
    write_json(
        paths.TOKENIZER_METRICS,
        {"vocab_size": tokenizer.get_vocab_size(), "corpus_sample": sample.summary(), "eval": scores},
    )
    grouped_bars(
        paths.TOKENIZER_PLOT,
        {
            set_name: {name: score["chars_per_token"] for name, score in by_tokenizer.items()}
            for set_name, by_tokenizer in scores.items()
        },
        title="Tokenizer efficiency (higher is better)",
        ylabel="characters per token",
    )
    summary = [f"tokenizer: vocab {tokenizer.get_vocab_size()} trained in {trained_in:.1f}s"]
    if sample.documents:
        summary[0] += f" (with {sample.taken:,} characters of the corpus)"
    for set_name in ("validation", HELD_OUT):
        if set_name in scores:
            scored = ", ".join(f"{name} {score['chars_per_token']:.2f}" for name, score in scores[set_name].items())
            summary.append(f"{set_name} chars/token: {scored}")
    print("; ".join(summary))


if __name__ == "__main__":
    run_main(main)
