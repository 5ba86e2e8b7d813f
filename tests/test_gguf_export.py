"""`python -m minigpt export --gguf`: a GGUF file that llama.cpp reads as the same GPT-2, read
back here with gguf's own reader; and, with llama.cpp built, the same greedy answers."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFReader, TokenType
from gguf.quants import dequantize

from minigpt.errors import MiniGPTError
from minigpt.gguf_export import export_gguf
from minigpt.tokenizer import load_tokenizer
from tests.helpers import REPO, run_command

# llama.cpp's GPT-2 tensor of each Hugging Face weight of layer 0, and whether it is transposed
# (Hugging Face's Conv1D stores [in, out]).
LAYER_TENSORS = {
    "ln_1.weight": ("attn_norm.weight", False),
    "ln_1.bias": ("attn_norm.bias", False),
    "attn.c_attn.weight": ("attn_qkv.weight", True),
    "attn.c_attn.bias": ("attn_qkv.bias", False),
    "attn.c_proj.weight": ("attn_output.weight", True),
    "attn.c_proj.bias": ("attn_output.bias", False),
    "ln_2.weight": ("ffn_norm.weight", False),
    "ln_2.bias": ("ffn_norm.bias", False),
    "mlp.c_fc.weight": ("ffn_up.weight", True),
    "mlp.c_fc.bias": ("ffn_up.bias", False),
    "mlp.c_proj.weight": ("ffn_down.weight", True),
    "mlp.c_proj.bias": ("ffn_down.bias", False),
}
MODEL_TENSORS = {
    "transformer.wte.weight": "token_embd.weight",
    "transformer.wpe.weight": "position_embd.weight",
    "transformer.ln_f.weight": "output_norm.weight",
    "transformer.ln_f.bias": "output_norm.bias",
}
MATRICES = (
    "token_embd.weight",
    "blk.0.attn_qkv.weight",
    "blk.0.attn_output.weight",
    "blk.0.ffn_up.weight",
    "blk.0.ffn_down.weight",
)


def hf_weights(model_dir) -> dict[str, np.ndarray]:
    """The model's weights under their GGUF names, as llama.cpp lays them out ([out, in])."""
    from transformers import AutoModelForCausalLM

    state = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).state_dict()
    weights = {gguf_name: state[name].numpy() for name, gguf_name in MODEL_TENSORS.items()}
    for name, (gguf_name, transposed) in LAYER_TENSORS.items():
        tensor = state[f"transformer.h.0.{name}"].numpy()
        weights[f"blk.0.{gguf_name}"] = tensor.T if transposed else tensor
    return weights


def field(reader: GGUFReader, key: str):
    return reader.fields[key].contents()


@pytest.mark.parametrize("weight_type, matrix_type", [("f16", np.float16), ("f32", np.float32)])
def test_an_export_is_the_model_and_its_tokenizer_in_llama_cpp_gpt2_layout(
    tiny_model_dir, tmp_path, weight_type, matrix_type
):
    out = export_gguf(tiny_model_dir, tmp_path / "tiny.gguf", weight_type)
    reader = GGUFReader(out)
    config = json.loads((tiny_model_dir / "config.json").read_text())
    tokenizer = load_tokenizer(tiny_model_dir)

    assert field(reader, "general.architecture") == "gpt2"
    assert field(reader, "gpt2.context_length") == config["n_positions"] == 64
    assert field(reader, "gpt2.embedding_length") == 32
    assert field(reader, "gpt2.feed_forward_length") == 4 * 32
    assert field(reader, "gpt2.block_count") == 1
    assert field(reader, "gpt2.attention.head_count") == 2
    assert field(reader, "gpt2.attention.layer_norm_epsilon") == pytest.approx(1e-5)

    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.pre") == "gpt-2"
    assert field(reader, "tokenizer.ggml.tokens") == tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    merges = json.loads((tiny_model_dir / "tokenizer.json").read_text())["model"]["merges"]
    assert field(reader, "tokenizer.ggml.merges") == [" ".join(merge) for merge in merges]
    special = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    types = field(reader, "tokenizer.ggml.token_type")
    assert [token_id for token_id, kind in enumerate(types) if kind == TokenType.CONTROL] == sorted(special)
    assert {kind for token_id, kind in enumerate(types) if token_id not in special} == {TokenType.NORMAL}
    assert field(reader, "tokenizer.ggml.eos_token_id") == tokenizer.eos_token_id == config["eos_token_id"]
    assert field(reader, "tokenizer.ggml.bos_token_id") == tokenizer.bos_token_id
    assert field(reader, "tokenizer.ggml.padding_token_id") == tokenizer.pad_token_id
    assert field(reader, "tokenizer.ggml.add_bos_token") is False  # the project's prompts start with their text
    assert field(reader, "tokenizer.chat_template") == tokenizer.chat_template

    weights = hf_weights(tiny_model_dir)
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    assert set(tensors) == set(weights)  # no output.weight: llama.cpp reuses token_embd as the tied head
    for name, weight in weights.items():
        stored = np.asarray(tensors[name].data)
        if name in MATRICES:
            assert tensors[name].tensor_type == GGMLQuantizationType[weight_type.upper()], name
            np.testing.assert_array_equal(stored, weight.astype(matrix_type), err_msg=name)
        else:  # vectors and the position embedding stay exact, as llama.cpp's converter keeps them
            assert tensors[name].tensor_type == GGMLQuantizationType.F32, name
            np.testing.assert_array_equal(stored, weight, err_msg=name)


def test_q8_0_stores_the_matrices_in_8_bit_blocks_and_the_rest_exactly(tiny_model_dir, tmp_path):
    f16 = export_gguf(tiny_model_dir, tmp_path / "f16.gguf", "f16")
    q8_0 = export_gguf(tiny_model_dir, tmp_path / "q8_0.gguf", "q8_0")
    reader = GGUFReader(q8_0)
    assert field(reader, "general.file_type") == 7  # llama.cpp's MOSTLY_Q8_0
    assert q8_0.stat().st_size < f16.stat().st_size

    weights = hf_weights(tiny_model_dir)
    for tensor in reader.tensors:
        weight = weights[tensor.name]
        if tensor.name in MATRICES:
            assert tensor.tensor_type == GGMLQuantizationType.Q8_0, tensor.name
            restored = dequantize(np.asarray(tensor.data), tensor.tensor_type).reshape(weight.shape)
            # Each block of 32 weights shares one scale, its largest magnitude / 127: rounding moves a weight
            # by half a step at most, plus up to 127 times the scale's own f16 rounding (2^-11 of it).
            step = np.abs(weight).reshape(-1, 32).max(axis=1, keepdims=True) / 127
            assert (np.abs(restored - weight).reshape(-1, 32) <= step * (0.5 + 127 / 2**11)).all(), tensor.name
        else:
            assert tensor.tensor_type == GGMLQuantizationType.F32, tensor.name
            np.testing.assert_array_equal(np.asarray(tensor.data), weight, err_msg=tensor.name)


def test_the_command_writes_beside_the_model_by_default_and_says_where(tiny_model_dir, tmp_path):
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "models" / "minigpt")
    shown = run_command([sys.executable, "-m", "minigpt", "export", "--gguf", "--model", str(model_dir)], REPO).stdout
    written = tmp_path / "models" / "minigpt-f16.gguf"
    assert GGUFReader(written).fields["general.architecture"].contents() == "gpt2"
    assert f"wrote {written} (" in shown and "MiB, f16)" in shown
    assert sorted(path.name for path in written.parent.iterdir()) == ["minigpt", "minigpt-f16.gguf"]  # no temp file

    no_format = run_command([sys.executable, "-m", "minigpt", "export", "--model", str(model_dir)], REPO, check=False)
    assert no_format.returncode == 2 and "--gguf" in no_format.stderr
    missing = run_command(
        [sys.executable, "-m", "minigpt", "export", "--gguf", "--model", str(tmp_path / "nowhere")], REPO, check=False
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith(f"error: model directory {tmp_path / 'nowhere'} not found")


def not_gpt2(model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps(config | {"model_type": "llama"}))


def prefix_space(model_dir):
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    tokenizer["pre_tokenizer"]["add_prefix_space"] = True
    (model_dir / "tokenizer.json").write_text(json.dumps(tokenizer))


def no_weights(model_dir):
    (model_dir / "model.safetensors").unlink()


def no_template(model_dir):
    (model_dir / "chat_template.jinja").unlink()


@pytest.mark.parametrize(
    "damage, problem",
    [
        (no_weights, "is not a complete model directory: missing model.safetensors"),
        (not_gpt2, "describes a 'llama' model: only GPT-2 models"),
        (prefix_space, "is not a byte-level BPE tokenizer like GPT-2's"),
        (no_template, "has no chat template"),
    ],
)
def test_a_directory_llama_cpp_would_misread_is_refused_with_the_reason(tiny_model_dir, tmp_path, damage, problem):
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    damage(model_dir)
    with pytest.raises(MiniGPTError, match=problem):
        export_gguf(model_dir, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_bad_arguments_are_explained(tiny_model_dir, tmp_path):
    with pytest.raises(MiniGPTError, match="model directory .*nowhere not found: run 'dvc repro train'"):
        export_gguf(tmp_path / "nowhere", tmp_path / "out.gguf")
    with pytest.raises(MiniGPTError, match="unsupported GGUF type 'q4_0': use one of f16, q8_0, f32"):
        export_gguf(tiny_model_dir, tmp_path / "out.gguf", "q4_0")
    with pytest.raises(MiniGPTError, match="cannot write .*: it is a directory"):
        export_gguf(tiny_model_dir, tmp_path)
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(MiniGPTError, match="cannot write .*notes.txt/out.gguf"):
        export_gguf(tiny_model_dir, tmp_path / "notes.txt" / "out.gguf")


LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None


@pytest.mark.slow
@pytest.mark.skipif(
    not LLAMA_CPP,
    reason="llama_cpp is not importable: build llama-cpp-python into a folder of its own and put it on PYTHONPATH "
    "(the docstring of benchmarks/llama_cpp.py shows the command)",
)
def test_llama_cpp_answers_the_f16_export_token_for_token_like_transformers(tiny_model_dir):
    shown = run_command(
        [
            sys.executable,
            "benchmarks/llama_cpp.py",
            *("--shapes", "default", "--model", str(tiny_model_dir), "--runtimes", "fp32", "f16", "--no-speed"),
        ],
        REPO,
    ).stdout  # exits with 1 when an f16 answer or a prompt's ids differ
    assert "| default | llama.cpp f16 | 6/6 | 6/6 | 6/6 |" in shown
