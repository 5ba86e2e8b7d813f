"""Loading a trained model and decoding from it: one module for evaluation, chat and the CLI,
so every answer comes from the same template, the same settings and the same stopping rule
(the model's own <|endoftext|>, or the token limit).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from minigpt.decoding import GenerationSettings
from minigpt.errors import MiniGPTError
from minigpt.packing import pad_batch
from minigpt.quantize import compress, is_int8

GENERATION_THREAD = "minigpt-generation"


@dataclass(frozen=True)
class Generated:
    text: str
    complete: bool  # ended with <|endoftext|> rather than at the token limit
    new_tokens: int


def pick_device(requested: str = "auto") -> torch.device:
    """`auto`: the GPU when CUDA has one, else the CPU; `cuda` without a GPU is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise MiniGPTError("device cuda was asked for, but CUDA sees no GPU here: use auto or cpu")
    return torch.device(requested)


def inference_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs with native bf16 (half the memory traffic, fp32's range), fp32 elsewhere."""
    native = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.bfloat16 if native else torch.float32


def load_model(
    directory: str | Path,
    device: str = "cpu",
    lora: str | Path | None = None,
    dtype: torch.dtype | None = None,
    weights: str | None = None,
):
    """A model directory written by the pipeline (or any complete GPT-2 directory), in eval
    mode, on `device` (see `pick_device`) in `dtype` (default: `inference_dtype`, bf16 on a GPU
    that has it), with a LoRA adapter directory applied if given. `weights` (one of
    `quantize.WEIGHT_FORMATS`) overrides `dtype`: fp32, bf16, or int8 on the CPU.

    Weights are read from safetensors only and no code from the directory is run.
    """
    from minigpt.model import load_hf

    model, tokenizer = load_hf(directory)
    if tokenizer.eos_token_id is None:
        raise MiniGPTError(f"the tokenizer in {directory} has no end-of-text token: answers could never stop")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # padding is masked out; any id will do
    if context_length(model) is None:
        raise MiniGPTError(f"{directory}/config.json gives no context length (n_positions or max_position_embeddings)")
    if lora is not None:
        from minigpt.lora import has_adapter, load_with_adapter

        if not has_adapter(lora):
            raise MiniGPTError(f"no LoRA adapter in {lora}: run 'dvc repro lora' first")
        model = load_with_adapter(model, lora)
    target = pick_device(device)
    if weights is not None:
        return compress(model.to(target, dtype=torch.float32).eval(), weights), tokenizer
    return model.to(target, dtype=dtype or inference_dtype(target)).eval(), tokenizer


# Scores are log-likelihoods summed over thousands of tokens, and an adapter's effect is a small
# delta on the base's activations: both are computed from fp32 weights on any device.
SCORING_DTYPE = torch.float32


def describe_device(model) -> str:
    """Where and in what precision a model runs, for the metrics that it produced."""
    if is_int8(model):
        return f"{model.device.type} (int8 dynamic quantization, float32 elsewhere)"
    return f"{model.device.type} ({str(model.dtype).removeprefix('torch.')})"


def context_length(model) -> int | None:
    config = model.config
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


def describe(settings: GenerationSettings) -> str:
    """The decoding, in words, for reports."""
    if not settings.do_sample:
        return f"greedy, up to {settings.max_new_tokens} new tokens"
    return (
        f"sampled (temperature {settings.temperature}, top-p {settings.top_p}, top-k {settings.top_k or 'off'}, "
        f"repetition penalty {settings.repetition_penalty}, seed {settings.seed}), "
        f"up to {settings.max_new_tokens} new tokens"
    )


def _check_room(model, settings: GenerationSettings) -> int:
    limit = context_length(model)
    if settings.max_new_tokens >= limit:
        raise MiniGPTError(
            f"max_new_tokens ({settings.max_new_tokens}) leaves no room for the prompt in the "
            f"model's context of {limit} tokens: lower it"
        )
    return limit


def prompt_room(model, settings: GenerationSettings) -> int:
    """How many prompt tokens fit beside `settings.max_new_tokens` in the model's context."""
    return _check_room(model, settings) - settings.max_new_tokens


def prompt_length(tokenizer, prompt: str) -> int:
    return len(tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"])


def _left_padded(tokenizer, prompts: Sequence[str], settings: GenerationSettings, limit: int):
    """Token ids and attention mask of prompts, left-padded. A prompt is never cut (an answer
    to half a question, or to no instruction at all, would pass for an answer): one that does
    not fit beside the answer is refused with the tokens it needs."""
    encoded = [tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"] for prompt in prompts]
    room = limit - settings.max_new_tokens
    for ids in encoded:
        if len(ids) > room:
            raise MiniGPTError(
                f"the prompt takes {len(ids):,} tokens and the model's context of {limit} leaves {room} beside "
                f"the {settings.max_new_tokens} new tokens asked for: shorten the instruction or its input, or "
                "ask for fewer new tokens"
            )
    return pad_batch(encoded, tokenizer.pad_token_id, left=True)


class _RowSampler:
    """Sampling as the last logits processor: temperature, top-k and top-p, then one draw per row
    from that row's own generator, seeded by the call's seed and the prompt's position. An answer
    is then the same whatever prompts share its batch, and whatever the batch size. The chosen
    token is left as the only possible one, which decoding without sampling then takes."""

    def __init__(self, settings: GenerationSettings, first_prompt: int, rows: int, device: torch.device):
        from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        self.warpers = [TemperatureLogitsWarper(settings.temperature)]
        self.warpers += [TopKLogitsWarper(settings.top_k)] if settings.top_k else []
        self.warpers += [TopPLogitsWarper(settings.top_p)] if settings.top_p < 1 else []
        seed = settings.seed if settings.seed is not None else torch.Generator().seed()
        self.generators = [torch.Generator(device=device).manual_seed(seed + first_prompt + row) for row in range(rows)]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        probabilities = scores.float().softmax(dim=-1)
        chosen = torch.cat(
            [torch.multinomial(row, 1, generator=generator) for row, generator in zip(probabilities, self.generators)]
        )
        return torch.full_like(scores, -math.inf).scatter_(1, chosen.unsqueeze(1), 0.0)


def _generate_arguments(
    model,
    tokenizer,
    input_ids: torch.Tensor,
    attention: torch.Tensor,
    settings: GenerationSettings,
    limit: int,
    first_prompt: int = 0,
) -> dict:
    """`model.generate` keyword arguments: the one place where settings become decoding.
    `first_prompt` is the position of the batch's first prompt in the call's prompts."""
    sampler = [_RowSampler(settings, first_prompt, input_ids.shape[0], model.device)] if settings.do_sample else []
    return dict(
        input_ids=input_ids.to(model.device),
        attention_mask=attention.to(model.device),
        max_new_tokens=min(settings.max_new_tokens, limit - input_ids.shape[1]),
        max_length=None,  # the saved generation config's cap; max_new_tokens bounds the answer here
        do_sample=False,
        logits_processor=sampler,
        repetition_penalty=settings.repetition_penalty,
        max_time=settings.max_seconds,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


@torch.inference_mode()
def batch_starts(count: int, batch_size: int, progress: str | None = None) -> Iterable[int]:
    """Where each batch of `count` items starts; with a `progress` label, shown as a bar with an
    ETA on stderr (scoring a validation split takes minutes at the seed shape)."""
    starts = range(0, count, batch_size)
    if progress is None:
        return starts
    from tqdm import tqdm

    return tqdm(starts, desc=progress, unit="batch", mininterval=2, dynamic_ncols=True)


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    settings: GenerationSettings,
    batch_size: int = 16,
    progress: str | None = None,
) -> list[Generated]:
    """Answers to rendered prompts, in batches (left-padded, KV cache), in input order; with a
    `progress` label, a progress bar."""
    eos = tokenizer.eos_token_id
    limit = _check_room(model, settings)
    results: list[Generated] = []
    for start in batch_starts(len(prompts), batch_size, progress):
        input_ids, attention = _left_padded(tokenizer, prompts[start : start + batch_size], settings, limit)
        output = model.generate(**_generate_arguments(model, tokenizer, input_ids, attention, settings, limit, start))
        for new in output[:, input_ids.shape[1] :].tolist():
            complete = eos in new
            tokens = new[: new.index(eos)] if complete else new
            results.append(Generated(tokenizer.decode(tokens, skip_special_tokens=True).strip(), complete, len(tokens)))
    return results


def stream(model, tokenizer, prompt: str, settings: GenerationSettings) -> Iterator[str]:
    """The pieces of one answer as they are generated (same decoding as `generate`).

    Closing the iterator early (a chat user pressing stop) stops the generation too, and an
    error inside generation is raised here rather than leaving the reader waiting forever.
    """
    from transformers import StoppingCriteriaList, TextIteratorStreamer

    limit = _check_room(model, settings)
    input_ids, attention = _left_padded(tokenizer, [prompt], settings, limit)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    cancelled = threading.Event()
    failure: list[BaseException] = []

    def generate_into_streamer() -> None:
        try:
            with torch.inference_mode():
                model.generate(
                    **_generate_arguments(model, tokenizer, input_ids, attention, settings, limit),
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_WhenSet(cancelled)]),
                )
        except BaseException as error:  # handed to the reader below
            failure.append(error)
            streamer.end()

    worker = threading.Thread(target=generate_into_streamer, name=GENERATION_THREAD, daemon=True)
    worker.start()
    try:
        yield from streamer
    except GeneratorExit:
        # Closed early: the worker stops at its next step. Not waited for, as the caller may be
        # an event loop (Gradio's) that must not block on a model step.
        cancelled.set()
        raise
    worker.join()
    if failure:
        raise failure[0]


class _WhenSet:
    """A stopping criterion: stop every sequence once `event` is set."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)
