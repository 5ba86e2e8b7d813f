"""A model directory as one GGUF file, the format llama.cpp, Ollama and LM Studio run.

The file is what llama.cpp's own converter (convert_hf_to_gguf.py, `GPT2Model`) makes of a
GPT-2 directory: tensors under gguf-py's GPT-2 names, the Conv1D projections transposed to
[out, in], and no `output.weight`: the head is the token embedding, and llama.cpp reuses that
when the head is absent. Norms, biases and the position embedding stay f32 in every type; the
other matrices take the type asked for (`TYPES`).

The tokenizer goes in as byte-level BPE (`gpt2`) with its merges and the `gpt-2` pre-tokenizer,
whose regex is the one tokenizer.json's ByteLevel pre-tokenizer splits with, so llama.cpp
tokenizes a prompt into the same ids. Nothing is added at the start of a prompt (the project's
prompts begin with their text), and the chat template is the project's own, so a runner that
formats conversations with it sends the model exactly what `minigpt.template` renders.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np

from minigpt.errors import MiniGPTError
from minigpt.files import atomic_path

ARCHITECTURE = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.GPT2]
# --type: the type of the large matrices, and the file type that names it in the file.
TYPES = {
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
}
DEFAULT_TYPE = "f16"
READ_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
# Hugging Face's GPT-2 stores these as Conv1D weights, [in, out]; GGUF wants [out, in].
CONV1D_WEIGHTS = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")
# llama.cpp's GPT-2 runs the tanh approximation of GELU, whatever config.json names.
TANH_GELU = ("gelu_new", "gelu_pytorch_tanh")


def default_output(model_dir: Path, weight_type: str) -> Path:
    """`models/minigpt` -> `models/minigpt-f16.gguf`: beside the model, named by its type."""
    return model_dir.parent / f"{model_dir.name}-{weight_type}.gguf"


def export_gguf(model_dir: str | Path, out: str | Path, weight_type: str = DEFAULT_TYPE) -> Path:
    """Write the model in `model_dir` (a GPT-2 directory as `minigpt.model.save_hf` writes it)
    to the GGUF file `out`, its matrices in `weight_type` (one of TYPES); return `out`."""
    model_dir, out = Path(model_dir), Path(out)
    if weight_type not in TYPES:
        raise MiniGPTError(f"unsupported GGUF type {weight_type!r}: use one of {', '.join(TYPES)}")
    if out.is_dir():
        raise MiniGPTError(f"cannot write {out}: it is a directory (--out names the .gguf file)")
    matrix_type, file_type = TYPES[weight_type]
    config = _read_config(model_dir)
    writer = gguf.GGUFWriter(path=None, arch=ARCHITECTURE)
    writer.add_name(model_dir.resolve().name)
    _add_hyperparameters(writer, config)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(writer, model_dir, config)
    _add_tensors(writer, model_dir, config, matrix_type)
    try:
        with atomic_path(out) as partial:
            writer.write_header_to_file(partial)
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
            writer.close()
    except OSError as error:
        raise MiniGPTError(f"cannot write {out}: {error.strerror or error}") from None
    return out


def _read_config(model_dir: Path) -> dict:
    if not model_dir.is_dir():
        raise MiniGPTError(f"model directory {model_dir} not found: run 'dvc repro train' (or 'dvc pull') first")
    missing = [name for name in READ_FILES if not (model_dir / name).is_file()]
    if missing:
        raise MiniGPTError(f"{model_dir} is not a complete model directory: missing {', '.join(missing)}")
    config = _read_json(model_dir / "config.json")
    if config.get("model_type") != ARCHITECTURE:
        raise MiniGPTError(
            f"{model_dir}/config.json describes a {config.get('model_type')!r} model: only GPT-2 models "
            "(what this project trains) export to GGUF here"
        )
    if config.get("activation_function") not in TANH_GELU:
        raise MiniGPTError(
            f"{model_dir}/config.json: activation {config.get('activation_function')!r}; llama.cpp's GPT-2 "
            f"computes {' / '.join(TANH_GELU)} only"
        )
    return config


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MiniGPTError(f"{path}: not valid JSON ({error})") from None


def _add_hyperparameters(writer: gguf.GGUFWriter, config: dict) -> None:
    writer.add_context_length(config["n_positions"])
    writer.add_embedding_length(config["n_embd"])
    writer.add_feed_forward_length(config.get("n_inner") or 4 * config["n_embd"])
    writer.add_block_count(config["n_layer"])
    writer.add_head_count(config["n_head"])
    writer.add_layer_norm_eps(config["layer_norm_epsilon"])


def _add_tokenizer(writer: gguf.GGUFWriter, model_dir: Path, config: dict) -> None:
    """Vocabulary, merges, special ids and chat template, from tokenizer.json and config.json."""
    tokenizer = _read_json(model_dir / "tokenizer.json")
    _check_byte_level_bpe(tokenizer, model_dir)
    ids = tokenizer["model"]["vocab"] | {added["content"]: added["id"] for added in tokenizer["added_tokens"]}
    tokens = {token_id: token for token, token_id in ids.items()}
    if sorted(tokens) != list(range(config["vocab_size"])):
        raise MiniGPTError(
            f"{model_dir}: the tokenizer's {len(tokens)} tokens do not number 0 to {config['vocab_size'] - 1}, "
            "the rows of the model's embedding (config.json vocab_size)"
        )
    added = {entry["id"]: entry for entry in tokenizer["added_tokens"]}
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list([tokens[token_id] for token_id in range(len(tokens))])
    writer.add_token_types(
        [
            gguf.TokenType.NORMAL
            if token_id not in added
            else gguf.TokenType.CONTROL
            if added[token_id]["special"]
            else gguf.TokenType.USER_DEFINED
            for token_id in range(len(tokens))
        ]
    )
    # Older tokenizers versions write a merge as "a b", newer ones as ["a", "b"]; GGUF holds "a b".
    merges = tokenizer["model"]["merges"]
    writer.add_token_merges([merge if isinstance(merge, str) else " ".join(merge) for merge in merges])
    if config.get("eos_token_id") is None:
        raise MiniGPTError(f"{model_dir}/config.json has no eos_token_id: answers could never stop")
    writer.add_eos_token_id(config["eos_token_id"])
    if config.get("bos_token_id") is not None:
        writer.add_bos_token_id(config["bos_token_id"])
    if config.get("pad_token_id") is not None:
        writer.add_pad_token_id(config["pad_token_id"])
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    writer.add_chat_template(_chat_template(model_dir))


def _check_byte_level_bpe(tokenizer: dict, model_dir: Path) -> None:
    """llama.cpp's `gpt-2` tokenizer is BPE over bytes, split by GPT-2's regex with no leading
    space added and no normalizer: a tokenizer.json that differs would tokenize differently."""
    pre = tokenizer.get("pre_tokenizer") or {}
    byte_level = (
        tokenizer["model"].get("type") == "BPE"
        and tokenizer.get("normalizer") is None
        and pre.get("type") == "ByteLevel"
        and pre.get("use_regex", True)
        and not pre.get("add_prefix_space", False)
    )
    if not byte_level:
        raise MiniGPTError(
            f"{model_dir}/tokenizer.json is not a byte-level BPE tokenizer like GPT-2's (ByteLevel pre-tokenizer "
            "with its regex, no prefix space, no normalizer): llama.cpp would tokenize prompts differently"
        )


def _chat_template(model_dir: Path) -> str:
    """The template transformers saves beside the tokenizer (or, from older versions, inside its config)."""
    template_file = model_dir / "chat_template.jinja"
    if template_file.is_file():
        return template_file.read_text(encoding="utf-8")
    template = _read_json(model_dir / "tokenizer_config.json").get("chat_template")
    if not isinstance(template, str):
        raise MiniGPTError(
            f"{model_dir} has no chat template (chat_template.jinja): llama.cpp, Ollama and LM Studio need it "
            "to turn a conversation into the model's prompt format"
        )
    return template


def _add_tensors(
    writer: gguf.GGUFWriter, model_dir: Path, config: dict, matrix_type: gguf.GGMLQuantizationType
) -> None:
    from safetensors import SafetensorError, safe_open

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPT2, config["n_layer"])
    tied = config.get("tie_word_embeddings", True)
    try:
        with safe_open(model_dir / "model.safetensors", framework="numpy") as weights:
            for name in weights.keys():
                gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
                if gguf_name is None:
                    raise MiniGPTError(f"{model_dir}/model.safetensors: {name} is not a GPT-2 weight")
                if tied and gguf_name == "output.weight":
                    continue  # the token embedding, which llama.cpp uses as the head when this is absent
                tensor = weights.get_tensor(name).astype(np.float32)
                if name.endswith(CONV1D_WEIGHTS):
                    tensor = np.ascontiguousarray(tensor.T)
                tensor_type = _tensor_type(gguf_name, tensor, matrix_type)
                writer.add_tensor(gguf_name, gguf.quants.quantize(tensor, tensor_type), raw_dtype=tensor_type)
    except (SafetensorError, OSError) as error:
        raise MiniGPTError(f"{model_dir}/model.safetensors cannot be read: {error}") from None


def _tensor_type(
    gguf_name: str, tensor: np.ndarray, matrix_type: gguf.GGMLQuantizationType
) -> gguf.GGMLQuantizationType:
    """llama.cpp's choice (convert_hf_to_gguf.py): vectors, norms and the position embedding in f32;
    a matrix whose rows do not split into whole quantization blocks in f16."""
    if tensor.ndim == 1 or gguf_name.startswith("position_embd."):
        return gguf.GGMLQuantizationType.F32
    block_size, _ = gguf.GGML_QUANT_SIZES[matrix_type]
    return matrix_type if tensor.shape[-1] % block_size == 0 else gguf.GGMLQuantizationType.F16
