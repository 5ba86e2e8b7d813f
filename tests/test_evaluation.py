"""The evaluation code shared by the stage and the CLI, on an untrained tiny model."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from minigpt import evaluation
from minigpt.decoding import CHAT_SAMPLING, GenerationSettings
from minigpt.errors import MiniGPTError
from minigpt.evaluation import decodings, evaluate_model, likelihood, load_choice_items, multiple_choice_accuracy
from minigpt.generation import load_model
from minigpt.metrics import ERROR_KINDS, ChoiceItem
from minigpt.packing import encode_instructions
from tests.helpers import spanish_examples


def test_answer_perplexity_is_the_models_own_loss_on_the_answer(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir)
    rows = spanish_examples(3)
    totals = likelihood(model, tokenizer, rows, batch_size=2)
    for row, total, (ids, targets) in zip(rows, totals, encode_instructions(rows, tokenizer, False)):
        labels = torch.tensor([token if target else -100 for token, target in zip(ids, targets)])
        with torch.no_grad():
            loss = model(input_ids=torch.tensor([ids]), labels=labels.unsqueeze(0)).loss
        assert total.response_tokens == sum(targets) == len(tokenizer(row["output"])["input_ids"]) + 1
        assert total.response_nll / total.response_tokens == pytest.approx(loss.item(), rel=1e-4)
        assert total.response_bytes == len(row["output"].encode()) and total.sequence_tokens == len(ids) - 1


def test_multiple_choice_picks_the_likeliest_option_in_total_and_per_character(monkeypatch):
    """As lm-evaluation-harness's `acc` and `acc_norm`: the prompt's trailing newline is scored
    with each option, and `accuracy_norm` divides by the option's characters, not its bytes."""
    # One token per character, each with this log-probability; the prompt's other characters are never scored.
    log_probability = {"\n": -2.0, "a": -1.0, "b": -0.5, "c": -1.1, "ñ": -1.1, "x": -1.0}
    items = [
        # a -3, bbbb -4 (newline included): per character -3 and -1
        ChoiceItem("¿Uno?", ["a", "bbbb"], 1),
        # ññ -4.2, xxx -5: per character -2.1 and -1.67 (per byte it would be -1.05 and -1.67: ññ)
        ChoiceItem("¿Dos?", ["ññ", "xxx"], 1),
        # a -3, cc -4.2: per character -3 and -2.1 (without the newline -1 and -1.1: a)
        ChoiceItem("¿Tres?", ["a", "cc"], 1),
        # b -2.5, a -3: per character the same
        ChoiceItem("¿Cuatro?", ["b", "a"], 0),
    ]

    class CharacterTokenizer:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(character) for character in text]}

    def fake_log_likelihoods(model, sequences, batch_size):
        return [torch.tensor([log_probability.get(chr(token), 0.0) for token in ids[1:]]) for ids in sequences]

    monkeypatch.setattr(evaluation, "token_log_likelihoods", fake_log_likelihoods)
    monkeypatch.setattr(evaluation, "context_length", lambda model: 512)
    result = multiple_choice_accuracy(object(), CharacterTokenizer(), items, batch_size=8)
    assert result == {"accuracy": 0.25, "accuracy_norm": 1.0, "chance": 0.5, "items": 4}


def test_evaluate_model_reports_every_metric_for_greedy_and_sampled_answers(tiny_model_dir, tmp_path, repo_params):
    model, tokenizer = load_model(tiny_model_dir)
    rows = [dict(row, category="ciencia" if index % 2 else "lengua") for index, row in enumerate(spanish_examples(6))]
    choices = tmp_path / "choices.jsonl"
    choices.write_text('{"question": "¿Dos más dos?", "choices": ["tres", "cuatro"], "answer": 1}\n', encoding="utf-8")
    settings = decodings(repo_params.evaluate.model_copy(update={"max_new_tokens": 6}))
    metrics, samples = evaluate_model(
        model, tokenizer, rows, {"mini": str(choices)}, settings, generate_count=4, batch_size=3
    )
    assert math.isfinite(metrics["perplexity"]) and metrics["bits_per_byte"] > 0 and metrics["examples"] == 6
    for generation in (metrics["generation"], metrics["sampled"]):
        assert set(generation) >= {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "coherence", "bleu_signature"}
    assert set(metrics["errors"]) == set(metrics["sampled"]["errors"]) == set(ERROR_KINDS)
    assert metrics["generation"]["decoding"] == "greedy, up to 6 new tokens" and metrics["too_long"] == 0
    assert metrics["sampled"]["decoding"].startswith("sampled (temperature 0.7, top-p 0.9, top-k 50")
    assert set(metrics["categories"]) == {"ciencia", "lengua"}
    assert metrics["multiple_choice"]["mini"]["chance"] == 0.5
    assert len(samples) == 4 and all(
        {"answer", "reference", "coherence", "errors", "sampled"} <= set(s) for s in samples
    )
    assert any(sample["answer"] != sample["sampled"]["answer"] for sample in samples)
    again, _ = evaluate_model(model, tokenizer, rows, {}, settings, generate_count=4, batch_size=1)
    assert again["sampled"]["coherence"] == metrics["sampled"]["coherence"]  # seeded: batch size changes nothing


def test_evaluation_samples_as_the_chat_does_by_default(repo_params):
    """The sampled column is what chat users get unless they move a slider."""
    from minigpt.chat import CONTROLS

    sampled = decodings(repo_params.evaluate)["sampled"]
    for name in ("do_sample", "temperature", "top_p", "top_k", "repetition_penalty"):
        assert getattr(sampled, name) == getattr(CHAT_SAMPLING, name), name
    assert {name: CONTROLS[name].default for name in ("temperature", "top_p", "top_k", "repetition_penalty")} == {
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 50,
        "repetition_penalty": 1.1,
    }
    assert list(decodings(repo_params.evaluate.model_copy(update={"sampled_answers": False}))) == ["greedy"]


def test_bad_choice_files_name_the_line(tmp_path):
    path = tmp_path / "choices.jsonl"
    path.write_text(
        '{"question": "¿A?", "choices": ["a", "b"], "answer": 0}\n' + '{"instruction": "¿B?"}\n', encoding="utf-8"
    )
    with pytest.raises(MiniGPTError, match=rf"{path}:2: "):
        load_choice_items(str(path))


@pytest.mark.parametrize(
    "item, named",
    [
        ({"question": "¿A?", "choices": "PR", "answer": 0}, "must be a list of strings"),
        ({"question": "¿A?", "choices": ["sí", None], "answer": 0}, "must be a list of strings"),
        ({"question": None, "choices": ["sí", "no"], "answer": 1}, "'question' must be a non-empty string"),
    ],
)
def test_choice_items_that_cannot_be_scored_are_refused_naming_the_line(tmp_path, item, named):
    path = tmp_path / "choices.jsonl"
    path.write_text(json.dumps(item, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(MiniGPTError, match=rf"{path}:1: .*{re.escape(named)}"):
        load_choice_items(str(path))


def test_a_window_one_token_longer_than_the_context_is_scored_as_lm_eval_scores_it(tiny_model_dir):
    """lm-eval feeds the last context + 1 tokens minus the final one: every token of the
    window but the first is predicted, and none is fed past the position embeddings."""
    model, _ = load_model(tiny_model_dir)
    ids = [(7 * index) % 300 + 5 for index in range(65)]  # the tiny model's context is 64
    (scores,) = evaluation.token_log_likelihoods(model, [ids], batch_size=1)
    with torch.no_grad():
        logits = model(torch.tensor([ids[:-1]])).logits[0].float().log_softmax(-1)
    assert len(scores) == 64
    torch.testing.assert_close(scores, logits.gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).squeeze(-1))


def test_examples_longer_than_the_context_are_left_out_and_counted(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir)
    rows = spanish_examples(2) + [{"instruction": "Explica.", "input": "", "output": "palabra " * 200}]
    totals = likelihood(model, tokenizer, rows, batch_size=2)
    assert totals[2] is None and all(total is not None for total in totals[:2])
    metrics, _ = evaluate_model(model, tokenizer, rows, {}, {"greedy": GenerationSettings(max_new_tokens=4)}, 1, 2)
    assert metrics["too_long"] == 1 and math.isfinite(metrics["bits_per_byte"])


def test_max_new_tokens_must_leave_room_for_the_prompt(tiny_model_dir):
    from minigpt.generation import generate

    model, tokenizer = load_model(tiny_model_dir)
    with pytest.raises(MiniGPTError, match=r"max_new_tokens \(64\) leaves no room"):
        generate(model, tokenizer, ["hola"], GenerationSettings(max_new_tokens=64))


@pytest.mark.parametrize(
    "row, message",
    [
        ({"question": "¿A?", "choices": ["a"], "answer": 0}, "at least two non-empty options"),
        ({"question": "¿A?", "choices": ["a", ""], "answer": 0}, "at least two non-empty options"),
        ({"question": "¿A?", "choices": ["a", "b"], "answer": 5}, "'answer' must be the index of an option, 0 to 1"),
    ],
)
def test_multiple_choice_items_are_checked(tmp_path, row, message):
    import json

    path = tmp_path / "choices.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(MiniGPTError, match=rf"{path}:1: .*{message}"):
        load_choice_items(str(path))
