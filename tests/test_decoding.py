"""One greedy decoding everywhere: `python -m minigpt generate`, the evaluation's greedy
answers, the chat at temperature 0, and a transformers pipeline reading the saved
generation_config.json give the same answer to the same instruction."""

from __future__ import annotations

import logging
from dataclasses import replace

from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

from minigpt.chat import settings_from_controls
from minigpt.decoding import CHAT_SAMPLING, GREEDY
from minigpt.evaluation import decodings
from minigpt.generation import generate, load_model
from minigpt.template import render_prompt
from tests.helpers import REPO, run_command

INSTRUCTION = "Explica el agua."
NEW_TOKENS = 24  # prompt and answer within the tiny model's 64 tokens


def test_greedy_has_no_repetition_penalty_and_sampling_has_the_chats():
    assert not GREEDY.do_sample and GREEDY.repetition_penalty == 1.0
    assert CHAT_SAMPLING.do_sample and CHAT_SAMPLING.repetition_penalty > 1


def test_the_evaluation_and_the_chat_at_temperature_zero_decode_greedy(repo_params):
    assert decodings(repo_params.evaluate)["greedy"] == replace(
        GREEDY, max_new_tokens=repo_params.evaluate.max_new_tokens
    )
    chat = settings_from_controls(0, 0.5, 7, NEW_TOKENS, 1.8, context=64, max_seconds=30)  # sliders moved
    assert chat == replace(GREEDY, max_new_tokens=NEW_TOKENS, seed=None, max_seconds=30)


def test_generate_the_evaluation_and_a_transformers_pipeline_give_the_same_answer(tiny_model_dir, repo_params):
    command = ["python", "-m", "minigpt", "generate", INSTRUCTION, "--model", str(tiny_model_dir)]
    cli = run_command([*command, "--max-new-tokens", str(NEW_TOKENS)], cwd=REPO).stdout.rstrip("\n")

    model, tokenizer = load_model(tiny_model_dir, "cpu")
    greedy = decodings(repo_params.evaluate.model_copy(update={"max_new_tokens": NEW_TOKENS}))["greedy"]
    evaluation = generate(model, tokenizer, [render_prompt(INSTRUCTION)], greedy)[0].text

    answer = pipeline("text-generation", model=str(tiny_model_dir), device="cpu")(
        [{"role": "user", "content": INSTRUCTION}], max_new_tokens=NEW_TOKENS
    )[0]["generated_text"][-1]["content"]
    assert cli == evaluation == answer.strip()  # the project's answers drop surrounding whitespace
    assert evaluation  # an untrained model answers something: the comparison is not of empty strings
    penalised = generate(model, tokenizer, [render_prompt(INSTRUCTION)], replace(greedy, repetition_penalty=1.3))
    assert penalised[0].text != evaluation  # the penalty would have shown


def test_a_caller_setting_max_new_tokens_gets_no_warning_from_the_saved_config(tiny_model_dir, caplog):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert model.generation_config.max_new_tokens == GREEDY.max_new_tokens
    with caplog.at_level(logging.WARNING):
        model.generate(**tokenizer("Hola", return_tensors="pt"), max_new_tokens=3)
    assert not [record for record in caplog.records if "max_length" in record.getMessage()]


def test_generate_help_shows_the_defaults_of_each_decoding():
    shown = " ".join(run_command(["python", "-m", "minigpt", "generate", "--help"], cwd=REPO).stdout.split())
    assert (
        f"default {GREEDY.repetition_penalty} (none) greedy, {CHAT_SAMPLING.repetition_penalty} with --sample" in shown
    )
    assert f"with --sample (default {CHAT_SAMPLING.top_k}; 0: no filter)" in shown
