"""The model card saved with models/minigpt: true numbers, and a usage snippet that runs."""

from __future__ import annotations

import re

from minigpt.config import ModelParams
from minigpt.decoding import GenerationSettings
from minigpt.generation import generate, load_model
from minigpt.model_card import render_model_card
from minigpt.template import render_prompt

METRICS = {
    "parameters": 1350400,
    "steps": 257,
    "tokens": 1052672,
    "train_seconds": 90.67,
    "tokens_per_second": 11609.8,
    "device": "cpu",
    "processes": 1,
    "precision": "no",
    "train_loss": 3.69,
    "val_loss": 4.95,
    "packing": {"train": {"sequences": 1547}, "validation": {"sequences": 162}},
}


def card_for(directory: str, repo_params, metrics=METRICS, block_size: int = 256) -> str:
    model = ModelParams(n_layer=4, n_head=4, n_embd=128, block_size=block_size, dropout=0.0)
    return render_model_card(model, repo_params.train, metrics, vocab_size=4096, directory=directory)


def test_the_card_states_shape_training_and_format(repo_params):
    card = card_for("models/minigpt", repo_params)
    assert card.startswith("---\nlanguage: es\n") and "pipeline_tag: text-generation" in card
    assert "| 4 | 4 | 128 | 256 | 4,096 | 1,350,400 |" in card
    assert "| training examples | 1,547 |" in card and "| epochs / optimizer steps | 12 / 257 |" in card
    assert "| validation loss (perplexity) | 4.95 (141) |" in card  # exp(4.95) = 141.2
    assert render_prompt("¿Qué es la fotosíntesis?", "(optional input)") in card
    assert "python -m minigpt chat" in card and "metrics/eval.json" in card


def test_the_card_holds_no_timing_so_the_same_training_saves_the_same_files(repo_params):
    """dvc.lock hashes models/minigpt: a card that changed with the machine's speed would move it."""
    slower = METRICS | {"train_seconds": 181.3, "tokens_per_second": 5804.9, "mfu": 0.01}
    assert card_for("models/minigpt", repo_params) == card_for("models/minigpt", repo_params, metrics=slower)


def test_missing_metrics_show_as_dashes(repo_params):
    card = card_for("models/minigpt", repo_params, metrics={})
    assert "| validation loss (perplexity) | — (—) |" in card and "| tokens seen | — |" in card


def test_the_cards_python_snippet_runs(tiny_model_dir, repo_params, capsys):
    card = card_for(str(tiny_model_dir), repo_params, block_size=64)  # the tiny model's context
    (snippet,) = re.findall(r"```python\n(.*?)```", card, flags=re.DOTALL)
    exec(compile(snippet, "model card", "exec"), {})
    model, tokenizer = load_model(tiny_model_dir)
    expected = generate(
        model, tokenizer, [render_prompt("¿Qué es la fotosíntesis?")], GenerationSettings(max_new_tokens=16)
    )
    assert capsys.readouterr().out.strip() == expected[0].text  # the same answer as the pipeline's decoding


def test_save_hf_writes_the_card_into_the_model_directory(tmp_path, tiny_model_dir, repo_params):
    from minigpt.model import from_hf, save_hf

    _, tokenizer = load_model(tiny_model_dir)
    save_hf(from_hf(tiny_model_dir), tmp_path / "model", tokenizer, card="# card\n")
    assert (tmp_path / "model" / "README.md").read_text(encoding="utf-8") == "# card\n"
