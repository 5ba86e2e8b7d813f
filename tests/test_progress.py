"""Long steps say how far they are and how long is left; model loads print nothing of their own."""

from __future__ import annotations

import warnings
from dataclasses import replace

from minigpt.decoding import GREEDY
from minigpt.evaluation import evaluate_model
from minigpt.generation import load_model
from minigpt.training import eta
from tests.helpers import spanish_examples


def test_eta_reads_like_a_log_line():
    assert [eta(s) for s in (-3, 0.4, 45, 725, 12_000)] == ["0s", "0s", "45s", "12m05s", "3h20m"]


def test_an_evaluation_with_a_label_shows_a_bar_per_part_with_an_eta(tiny_model_dir, capfd):
    model, tokenizer = load_model(tiny_model_dir)
    capfd.readouterr()
    rows, greedy = spanish_examples(4), {"greedy": replace(GREEDY, max_new_tokens=8)}
    evaluate_model(model, tokenizer, rows, {}, greedy, 2, batch_size=2, progress="evaluate")
    shown = capfd.readouterr().err
    assert "evaluate: likelihood" in shown and "evaluate: greedy answers" in shown
    assert "2/2" in shown and "<" in shown  # tqdm's done/total [elapsed<remaining]
    evaluate_model(model, tokenizer, rows, {}, greedy, 2, batch_size=2)
    assert capfd.readouterr().err == ""  # no label, no bar (tests, the chat)


def test_loading_a_model_and_its_adapter_prints_no_bars_or_known_deprecations(tiny_model_dir, tmp_path, capfd):
    from minigpt.lora import add_adapters, save_adapter
    from minigpt.model import from_hf
    from tests.helpers import LORA

    base, tokenizer = load_model(tiny_model_dir)
    save_adapter(
        add_adapters(from_hf(tiny_model_dir), LORA, seed=0), tmp_path / "lora", LORA, tiny_model_dir, tokenizer
    )
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_model(tiny_model_dir, lora=tmp_path / "lora")
        from_hf(tiny_model_dir)
    printed = capfd.readouterr()
    assert "Loading weights" not in printed.err + printed.out
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]
