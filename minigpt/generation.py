"""Loading a trained model and decoding from it: one module for evaluation, chat and the CLI,
so every answer comes from the same template, the same settings and the same stopping rule
(the model's own <|endoftext|>, or the token limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from minigpt.errors import MiniGPTError

REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 128
    do_sample: bool = False  # greedy by default: reproducible answers for evaluation
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class Generated:
    text: str
    complete: bool  # ended with <|endoftext|> rather than at the token limit
    new_tokens: int


def load_model(directory: str | Path, device: str | torch.device = "cpu", lora: str | Path | None = None):
    """A model directory written by the pipeline (or any complete GPT-2 directory), in eval
    mode, with a LoRA adapter directory applied if given.

    Weights are read from safetensors only and no code from the directory is run.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = Path(directory)
    if not directory.is_dir():
        raise MiniGPTError(f"model directory {directory} not found: run 'dvc repro train' (or 'dvc pull') first")
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise MiniGPTError(f"model directory {directory} is incomplete: missing {', '.join(missing)}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
        model = AutoModelForCausalLM.from_pretrained(directory, use_safetensors=True, trust_remote_code=False)
    except Exception as error:  # malformed config, corrupt weights, unknown architecture: all unusable
        raise MiniGPTError(f"model directory {directory} cannot be loaded: {type(error).__name__}: {error}") from None
    if tokenizer.eos_token_id is None:
        raise MiniGPTError(f"the tokenizer in {directory} has no end-of-text token: answers could never stop")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # padding is masked out; any id will do
    if context_length(model) is None:
        raise MiniGPTError(f"{directory}/config.json gives no context length (n_positions or max_position_embeddings)")
    if lora is not None:
        from minigpt.lora import ADAPTER_WEIGHTS, load_with_adapter

        if not (Path(lora) / ADAPTER_WEIGHTS).is_file() or not (Path(lora) / "adapter_config.json").is_file():
            raise MiniGPTError(f"no LoRA adapter in {lora}: run 'dvc repro lora' first")
        model = load_with_adapter(model, lora)
    return model.to(device).eval(), tokenizer


def context_length(model) -> int | None:
    config = model.config
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


def describe(settings: GenerationSettings) -> str:
    """The decoding, in words, for reports."""
    if not settings.do_sample:
        return f"greedy, up to {settings.max_new_tokens} new tokens"
    return (f"sampled (temperature {settings.temperature}, top-p {settings.top_p}, top-k {settings.top_k or 'off'}, "
            f"seed {settings.seed}), up to {settings.max_new_tokens} new tokens")


@torch.inference_mode()
def generate(model, tokenizer, prompts: Sequence[str], settings: GenerationSettings,
             batch_size: int = 16) -> list[Generated]:
    """Answers to rendered prompts, in batches (left-padded, KV cache), in input order."""
    eos = tokenizer.eos_token_id
    limit = context_length(model)
    if settings.max_new_tokens >= limit:
        raise MiniGPTError(f"max_new_tokens ({settings.max_new_tokens}) leaves no room for the prompt in the "
                           f"model's context of {limit} tokens: lower it")
    results: list[Generated] = []
    torch.manual_seed(settings.seed)
    for start in range(0, len(prompts), batch_size):
        encoded = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts[start:start + batch_size]]
        # Keep the end of an over-long prompt (its response header) and room to answer.
        keep = limit - settings.max_new_tokens
        encoded = [ids[-keep:] for ids in encoded]
        width = max(len(ids) for ids in encoded)
        input_ids = torch.full((len(encoded), width), tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            attention[row, width - len(ids):] = 1
        sampling = {"temperature": settings.temperature, "top_p": settings.top_p, "top_k": settings.top_k} \
            if settings.do_sample else {}
        output = model.generate(
            input_ids=input_ids.to(model.device), attention_mask=attention.to(model.device),
            max_new_tokens=min(settings.max_new_tokens, limit - width), max_length=None,  # (the saved cap)
            do_sample=settings.do_sample,
            repetition_penalty=settings.repetition_penalty, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
            **sampling)
        for new in output[:, width:].tolist():
            complete = eos in new
            tokens = new[:new.index(eos)] if complete else new
            results.append(Generated(tokenizer.decode(tokens, skip_special_tokens=True).strip(), complete, len(tokens)))
    return results
