"""LoRA adapters: trained on the lean model, loaded by PEFT onto the Hugging Face model, merged."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from minigpt.config import LoraParams
from minigpt.errors import MiniGPTError
from minigpt.generation import load_model
from minigpt.lora import add_adapters, category_rows, load_with_adapter, parameter_counts, save_adapter, save_merged
from minigpt.model import from_hf
from tests.helpers import LORA, REPO, RUNTIME, random_rows, run_command


@pytest.fixture
def adapted(tiny_model_dir):
    model = add_adapters(from_hf(tiny_model_dir), LORA, seed=0)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # B starts at zero; move it so the adapter changes something
            torch.nn.init.normal_(parameter, std=0.2)
    return model.eval()


def test_only_the_adapters_train(tiny_model_dir, adapted):
    trainable, total = parameter_counts(adapted)
    base = from_hf(tiny_model_dir).num_parameters()
    assert total == base + trainable and 0 < trainable < 0.2 * base
    assert all("lora_" in name for name, p in adapted.named_parameters() if p.requires_grad)


def test_the_saved_adapter_and_the_merged_model_give_the_trained_logits(tiny_model_dir, adapted, tmp_path):
    _, tokenizer = load_model(tiny_model_dir)
    save_adapter(adapted, tmp_path / "adapter", LORA, tiny_model_dir, tokenizer)
    idx = torch.randint(0, 300, (2, 12))
    expected = adapted(idx)[0]
    with_adapter = load_with_adapter(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "adapter")
    torch.testing.assert_close(with_adapter(idx).logits, expected, atol=1e-5, rtol=1e-5)
    base_logits = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(idx).logits
    assert not torch.allclose(base_logits, expected, atol=1e-3)  # the adapter does something

    save_merged(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "adapter", tmp_path / "merged", tokenizer
    )
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    torch.testing.assert_close(merged(idx).logits, expected, atol=1e-5, rtol=1e-5)
    model, _ = load_model(tiny_model_dir, lora=tmp_path / "adapter")
    torch.testing.assert_close(model(idx).logits, expected, atol=1e-5, rtol=1e-5)


def test_the_adapter_config_is_the_same_bytes_in_every_process(tiny_model_dir, tmp_path):
    """dvc.lock hashes the adapter: its config must not depend on the process's string hashing."""
    written = []
    for hash_seed in ("1", "2", "3", "4"):
        directory = tmp_path / hash_seed
        directory.mkdir()
        script = (
            "import sys; from pathlib import Path; from minigpt.lora import save_adapter_config; "
            "from tests.helpers import LORA; save_adapter_config(LORA, sys.argv[1], Path(sys.argv[2]))"
        )
        run_command(
            [sys.executable, "-c", script, str(tiny_model_dir), str(directory)], REPO, env={"PYTHONHASHSEED": hash_seed}
        )
        written.append((directory / "adapter_config.json").read_bytes())
    assert len(set(written)) == 1
    assert json.loads(written[0])["target_modules"] == ["c_attn", "c_fc", "c_proj"]


def test_a_missing_adapter_names_the_stage(tiny_model_dir, tmp_path):
    with pytest.raises(MiniGPTError, match="no LoRA adapter in .*: run 'dvc repro lora'"):
        load_model(tiny_model_dir, lora=tmp_path)


def test_a_damaged_adapter_is_explained_not_a_traceback(tiny_model_dir, adapted, tmp_path):
    _, tokenizer = load_model(tiny_model_dir)
    save_adapter(adapted, tmp_path / "adapter", LORA, tiny_model_dir, tokenizer)
    weights = tmp_path / "adapter" / "adapter_model.safetensors"
    intact = weights.read_bytes()
    weights.write_bytes(intact[:1000])
    with pytest.raises(
        MiniGPTError, match=r"adapter in .*adapter is damaged: adapter_model.safetensors cannot be read"
    ):
        load_model(tiny_model_dir, lora=tmp_path / "adapter")
    weights.write_bytes(intact)
    for garbage, problem in (("{garbage", "is not JSON"), ("[1, 2]", "is not a JSON object")):
        (tmp_path / "adapter" / "adapter_config.json").write_text(garbage, encoding="utf-8")
        with pytest.raises(
            MiniGPTError, match=f"is damaged: adapter_config.json {problem}.*'dvc repro lora'"
        ) as raised:
            load_model(tiny_model_dir, lora=tmp_path / "adapter")
        assert "does not fit" not in str(raised.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where QLoRA cannot run")
def test_qlora_without_a_gpu_fails_with_a_clear_message(tiny_model_dir):
    with pytest.raises(MiniGPTError, match="lora.qlora needs a CUDA GPU and bitsandbytes"):
        add_adapters(from_hf(tiny_model_dir), LORA.model_copy(update={"qlora": True}), seed=0)


def test_params_refuse_the_tied_head_and_bad_targets_are_named(tiny_model_dir):
    with pytest.raises(ValueError, match="cannot include lm_head"):
        LoraParams.model_validate(LORA.model_dump() | {"target_modules": ["c_attn", "lm_head"]})
    with pytest.raises(MiniGPTError, match=r"lora.target_modules \['q_proj'\]"):
        add_adapters(from_hf(tiny_model_dir), LORA.model_copy(update={"target_modules": ["q_proj"]}), seed=0)


def test_every_category_needs_training_examples():
    rows = [{"category": "ciencia"}, {"category": "lengua"}]
    assert category_rows(rows, ["ciencia", "programación"], "validation", every_category=False) == rows[:1]
    with pytest.raises(
        MiniGPTError, match=r"no train example is in lora.categories \['programacion'\].*ciencia, lengua"
    ):
        category_rows(rows, ["ciencia", "programacion"], "train", every_category=True)


def test_switching_merge_does_not_retrain(tiny_model_dir, tmp_path):
    from minigpt.training import train_loop

    params = LORA.model_copy(update={"batch_tokens": 256})  # one micro-batch of the tiny model's 64-token rows
    rows = random_rows(32)  # short rows of token ids below the tiny model's vocabulary
    first = train_loop(
        add_adapters(from_hf(tiny_model_dir), params, seed=0), rows, rows, params, RUNTIME, tmp_path, None
    )
    again = train_loop(
        add_adapters(from_hf(tiny_model_dir), params, seed=0),
        rows,
        rows,
        params.model_copy(update={"merge": True}),
        RUNTIME,
        tmp_path,
        None,
    )
    assert again.history == first.history  # resumed at the end: nothing trained twice
