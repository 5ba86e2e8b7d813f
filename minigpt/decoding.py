"""How answers are decoded by default, in one place.

GREEDY is the one greedy decoding: the evaluation's greedy answers, `python -m minigpt generate`
without `--sample`, the chat at temperature 0 and the `generation_config.json` saved with every
model (so `model.generate` and a transformers pipeline answer like the evaluation). Plain argmax,
no repetition penalty: the answer the model itself finds most likely.

CHAT_SAMPLING is what the chat's sliders start at and what `--sample` uses; `evaluate` scores
answers sampled this way beside the greedy ones (its params hold the same values; a test checks).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 128
    do_sample: bool = False  # greedy by default: reproducible answers for evaluation
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = 0  # None: a fresh random seed for every call (the chat)
    max_seconds: float | None = None  # wall-clock limit per generate call (the chat's guard)


GREEDY = GenerationSettings()
CHAT_SAMPLING = GenerationSettings(do_sample=True, temperature=0.7, top_p=0.9, top_k=50, repetition_penalty=1.1)


def saved_generation_config(eos_token_id: int, pad_token_id: int) -> dict:
    """What a saved model's `generation_config.json` holds: GREEDY. It caps new tokens, not
    the total length, so a caller's `max_new_tokens` never conflicts with it; prompt and answer
    must still fit the model's context (its `n_positions`)."""
    return {
        "do_sample": GREEDY.do_sample,
        "max_new_tokens": GREEDY.max_new_tokens,
        "repetition_penalty": GREEDY.repetition_penalty,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
        "bos_token_id": eos_token_id,
    }
