"""One decoding path for evaluation, chat and the CLI: batched, KV-cached, same stopping rule."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from minigpt.decoding import GenerationSettings
from minigpt.errors import MiniGPTError
from minigpt.generation import generate, load_model, stream
from minigpt.template import render_prompt
from tests.helpers import spanish_examples

PROMPTS = [
    render_prompt("¿Qué es la luz?"),
    render_prompt("Explica el concepto número 3 de la lista.", "Una entrada."),
    render_prompt("Di hola."),
    render_prompt("¿Cuánto es 2 + 2?"),
]


def test_batched_answers_equal_one_at_a_time(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir)
    settings = GenerationSettings(max_new_tokens=12)
    batched = generate(model, tokenizer, PROMPTS, settings, batch_size=4)
    assert batched == [generate(model, tokenizer, [prompt], settings)[0] for prompt in PROMPTS]
    for answer in batched:
        assert answer.complete or answer.new_tokens == 12


def test_sampling_is_reproducible_with_its_seed(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir)
    sampled = GenerationSettings(max_new_tokens=16, do_sample=True, temperature=1.5, top_p=0.95, seed=3)
    first = generate(model, tokenizer, PROMPTS, sampled)
    assert first == generate(model, tokenizer, PROMPTS, sampled)
    other_seed = GenerationSettings(max_new_tokens=16, do_sample=True, temperature=1.5, top_p=0.95, seed=4)
    assert first != generate(model, tokenizer, PROMPTS, other_seed)


def test_a_sampled_answer_does_not_depend_on_its_batch(tiny_model_dir):
    """Each prompt draws from its own seeded generator: the batch size is a runtime setting."""
    model, tokenizer = load_model(tiny_model_dir)
    sampled = GenerationSettings(max_new_tokens=16, do_sample=True, temperature=1.5, top_k=20, top_p=0.95, seed=3)
    batched = generate(model, tokenizer, PROMPTS, sampled, batch_size=4)
    assert batched == generate(model, tokenizer, PROMPTS, sampled, batch_size=1)
    assert batched == generate(model, tokenizer, PROMPTS, sampled, batch_size=3)
    assert len({answer.text for answer in batched}) > 1
    only_the_likeliest = GenerationSettings(max_new_tokens=16, do_sample=True, top_k=1, seed=3)
    assert generate(model, tokenizer, PROMPTS, only_the_likeliest) == generate(
        model, tokenizer, PROMPTS, GenerationSettings(max_new_tokens=16)
    )


def test_an_over_long_prompt_is_refused_with_the_tokens_it_needs_never_cut(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir)
    long_prompt = render_prompt("palabra " * 300)
    needed = len(tokenizer(long_prompt, add_special_tokens=False)["input_ids"])
    expected = f"the prompt takes {needed:,} tokens and the model's context of 64 leaves 56 beside the 8 new tokens"
    with pytest.raises(MiniGPTError, match=expected):
        generate(model, tokenizer, [render_prompt("Hola"), long_prompt], GenerationSettings(max_new_tokens=8))
    with pytest.raises(MiniGPTError, match="leaves 56 beside"):
        next(stream(model, tokenizer, long_prompt, GenerationSettings(max_new_tokens=8)))


def test_the_evaluation_answers_only_prompts_that_fit_and_counts_the_others(tiny_model_dir):
    from minigpt.evaluation import evaluate_rows

    model, tokenizer = load_model(tiny_model_dir)
    rows = spanish_examples(3) + [dict(spanish_examples(1)[0], instruction="palabra " * 300)]
    metrics, samples = evaluate_rows(model, tokenizer, rows, {"greedy": GenerationSettings(max_new_tokens=8)}, 0, 2)
    assert metrics["generation"]["too_long"] == 1 and metrics["generation"]["examples"] == len(samples) == 3


def test_missing_or_incomplete_model_directories_are_explained(tmp_path, tiny_model_dir):
    with pytest.raises(MiniGPTError, match="not found: run 'dvc repro train'"):
        load_model(tmp_path / "nothing")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    with pytest.raises(MiniGPTError, match="incomplete: missing model.safetensors, tokenizer.json"):
        load_model(partial)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"model_type": "bert", "architectures": ["BertForMaskedLM"]}, "holds a 'bert' model .*not the 'gpt2' model"),
        ({"n_layer": 2}, r"does not describe model.safetensors \(\d+ weights missing: transformer.h.1"),
        ({"n_embd": 16}, r"\(\d+ weights of another shape: "),
    ],
)
def test_a_config_that_does_not_describe_the_weights_fails(tmp_path, tiny_model_dir, change, problem):
    """Transformers would answer with random weights where the file has none (or other shapes)."""
    import json
    import shutil

    directory = tmp_path / "model"
    shutil.copytree(tiny_model_dir, directory)
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    (directory / "config.json").write_text(json.dumps(config | change), encoding="utf-8")
    with pytest.raises(MiniGPTError, match=f"model directory {directory}.*{problem}"):
        load_model(directory)


def test_streaming_gives_the_same_answer_as_generate(tiny_model_dir):
    from minigpt.generation import stream

    model, tokenizer = load_model(tiny_model_dir)
    settings = GenerationSettings(max_new_tokens=12)
    for prompt in PROMPTS[:2]:
        assert (
            "".join(stream(model, tokenizer, prompt, settings)).strip()
            == generate(model, tokenizer, [prompt], settings)[0].text
        )


def generate_command(model_dir, *args: str) -> subprocess.CompletedProcess:
    """`python -m minigpt generate ARGS --model MODEL_DIR`, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "minigpt", "generate", *args, "--model", str(model_dir)],
        capture_output=True,
        text=True,
    )


def test_the_generate_command_answers_and_refuses_bad_settings(tiny_model_dir):
    def command(*args: str) -> subprocess.CompletedProcess:
        return generate_command(tiny_model_dir, *args)

    plain = command("¿Qué es la luz?", "--max-new-tokens", "8")
    streamed = command("¿Qué es la luz?", "--max-new-tokens", "8", "--stream")
    assert plain.returncode == streamed.returncode == 0
    assert plain.stdout.strip() == streamed.stdout.strip()
    bad = command("¿Qué es la luz?", "--top-p", "1.5")
    assert bad.returncode == 2 and "--top-p: must be between 0.01 and 1.0" in bad.stderr
    too_long = command("¿Qué es la luz?", "--max-new-tokens", "200")
    assert too_long.returncode == 1 and "leaves no room for the prompt" in too_long.stderr
    for blank in ("", "   "):  # the chat refuses these too
        empty = command(blank)
        assert empty.returncode == 1 and "the instruction is empty" in empty.stderr and not empty.stdout


def test_the_default_answer_length_is_cut_to_the_context_with_a_note(tiny_model_dir):
    """The tiny model's context is 64 tokens: the default 128 would not fit, a flag the user set is kept."""
    done = generate_command(tiny_model_dir, "¿Qué es la luz?")
    assert done.returncode == 0, done.stderr
    assert re.search(r"note: answering in up to \d+ tokens, what the model's context of 64 leaves", done.stderr)
    huge = generate_command(tiny_model_dir, "palabra " * 80)
    assert huge.returncode == 1 and re.search(r"the prompt takes \d+ tokens and the model's context is 64", huge.stderr)


def _forward_calls(model) -> list[int]:
    calls = [0]
    model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_closing_a_stream_stops_its_generation(tiny_model_dir):
    from minigpt.generation import GENERATION_THREAD, stream

    model, tokenizer = load_model(tiny_model_dir)
    settings = GenerationSettings(max_new_tokens=40)
    assert not generate(model, tokenizer, PROMPTS[:1], settings)[0].complete  # left alone, it runs 40 steps
    calls = _forward_calls(model)
    pieces = stream(model, tokenizer, PROMPTS[0], settings)
    next(pieces)
    pieces.close()  # what Gradio does when the user presses stop
    for thread in threading.enumerate():
        if thread.name == GENERATION_THREAD:
            thread.join()
    assert calls[0] < 40


def test_an_error_inside_generation_reaches_the_reader(tiny_model_dir, monkeypatch):
    from minigpt.generation import stream

    model, tokenizer = load_model(tiny_model_dir)

    def broken(**kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(model, "generate", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        list(stream(model, tokenizer, PROMPTS[0], GenerationSettings(max_new_tokens=8)))


def test_the_time_limit_ends_an_answer(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir)
    (answer,) = generate(model, tokenizer, PROMPTS[:1], GenerationSettings(max_new_tokens=40, max_seconds=0.0))
    assert answer.new_tokens == 1 and not answer.complete


def test_the_device_is_the_gpu_when_there_is_one_and_can_be_forced(monkeypatch):
    import torch

    from minigpt.generation import inference_dtype, pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto").type == "cpu" and pick_device("cpu").type == "cpu"
    assert inference_dtype(torch.device("cpu")) == torch.float32
    with pytest.raises(MiniGPTError, match="device cuda was asked for, but CUDA sees no GPU"):
        pick_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert pick_device("auto").type == "cuda" and pick_device("cpu").type == "cpu"
    assert inference_dtype(torch.device("cuda")) == torch.bfloat16


def damaged(tiny_model_dir, tmp_path, damage) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    damage(copy)
    return copy


def truncate(directory: Path) -> None:
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


def longer_context(directory: Path) -> None:
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps(config | {"n_positions": 128}))


@pytest.mark.parametrize(
    "damage, message",
    [
        (truncate, "cannot be loaded"),
        (lambda directory: (directory / "model.safetensors").write_bytes(b""), "cannot be loaded"),
        (longer_context, "config.json does not describe model.safetensors"),
    ],
)
def test_every_loader_refuses_a_damaged_model_directory_naming_it(tiny_model_dir, tmp_path, damage, message):
    from minigpt.model import from_hf

    directory = damaged(tiny_model_dir, tmp_path, damage)
    for load in (load_model, from_hf):
        with pytest.raises(MiniGPTError, match=f"model directory {re.escape(str(directory))}.*{message}"):
            load(directory)


def test_a_tokenizer_of_another_model_is_refused_by_every_loader(tiny_model_dir, corpus_tokenizer, tmp_path):
    from minigpt.chat import ChatModels
    from minigpt.model import from_hf

    def swap_tokenizer(directory: Path) -> None:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(corpus_tokenizer / name, directory / name)

    directory = damaged(tiny_model_dir, tmp_path, swap_tokenizer)
    for load in (load_model, from_hf, ChatModels):
        with pytest.raises(MiniGPTError, match="its tokenizer has 500 tokens but the model's embeddings hold 4"):
            load(directory)
