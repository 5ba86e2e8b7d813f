"""Weight formats for CPU inference: the same model in fp32, bf16 and int8."""

from __future__ import annotations

import sys

import pytest
import torch

from minigpt import quantize
from minigpt.decoding import GenerationSettings
from minigpt.errors import MiniGPTError
from minigpt.generation import describe_device, generate, load_model
from minigpt.quantize import compress, conv1d_to_linear, is_int8
from minigpt.template import render_prompt
from tests.helpers import REPO, run_command

PROMPTS = [render_prompt("¿Qué es la fotosíntesis?"), render_prompt("Di tres colores.")]


def logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer(PROMPTS[0], return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        return model(ids).logits.float()


def test_conv1d_becomes_an_equivalent_linear(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir)
    before = logits(model, tokenizer)
    converted = conv1d_to_linear(model)
    assert not any(type(module).__name__ == "Conv1D" for module in converted.modules())
    torch.testing.assert_close(logits(converted, tokenizer), before, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("weights, tolerance", [("bf16", 0.1), ("int8", 0.1)])
def test_each_format_stays_close_to_fp32_and_says_what_it_is(tiny_model_dir, weights, tolerance):
    reference, tokenizer = load_model(tiny_model_dir)
    model, _ = load_model(tiny_model_dir, weights=weights)
    difference = (logits(model, tokenizer) - logits(reference, tokenizer)).abs().max().item()
    assert 0 < difference < tolerance  # moved (the format is in use), but little
    assert is_int8(model) == (weights == "int8")
    assert describe_device(model) == (
        "cpu (int8 dynamic quantization, float32 elsewhere)" if weights == "int8" else "cpu (bfloat16)"
    )
    answers = generate(model, tokenizer, PROMPTS, GenerationSettings(max_new_tokens=8))
    assert all(answer.new_tokens > 0 for answer in answers)


def test_formats_are_checked(tiny_model_dir):
    model, _ = load_model(tiny_model_dir)
    assert compress(model, "fp32") is model
    with pytest.raises(MiniGPTError, match="unknown weight format 'int4'"):
        compress(model, "int4")


def test_the_command_line_answers_with_int8_weights(tiny_model_dir):
    printed = run_command(
        [
            sys.executable,
            "-m",
            "minigpt",
            "generate",
            "Hola",
            "--model",
            str(tiny_model_dir),
            "--weights",
            "int8",
            "--max-new-tokens",
            "4",
            "--device",
            "cpu",
        ],
        cwd=REPO,
    )
    assert printed.returncode == 0 and "Traceback" not in printed.stderr
    assert "int8 weights make a 0.0" in printed.stderr and "fp32 is the better choice" in printed.stderr


def test_int8_is_not_discouraged_where_it_pays(monkeypatch, capsys):
    monkeypatch.setattr(quantize, "INT8_PAYS_FROM", 1_000)  # a tiny model counted as a large one
    model = torch.nn.Sequential(torch.nn.Linear(64, 64))
    assert is_int8(compress(model, "int8")) and "warning" not in capsys.readouterr().err
