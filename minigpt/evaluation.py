"""Scoring a model on instruction data and multiple-choice items: the code behind the
`evaluate` stage and `python -m minigpt evaluate`, so both report the same numbers."""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from minigpt import template
from minigpt.config import EvaluateParams
from minigpt.data import read_split
from minigpt.decoding import CHAT_SAMPLING, GREEDY, GenerationSettings
from minigpt.errors import MiniGPTError
from minigpt.generation import (
    Generated,
    batch_starts,
    context_length,
    describe,
    generate,
    prompt_length,
    prompt_room,
)
from minigpt.metrics import (
    ERROR_KINDS,
    ROUGE_TYPES,
    AnswerChecks,
    ChoiceItem,
    bits_per_byte,
    bleu_chrf,
    check_answer,
    parse_choice_item,
    perplexity,
    rouge_scores,
)
from minigpt.packing import encode_instructions, pad_batch
from minigpt.sources.formats import ErrorPolicy, read_records


@dataclass(frozen=True)
class LikelihoodTotals:
    response_nll: float = 0.0
    response_tokens: int = 0
    response_bytes: int = 0
    sequence_nll: float = 0.0
    sequence_tokens: int = 0
    sequence_bytes: int = 0

    def __add__(self, other: LikelihoodTotals) -> LikelihoodTotals:
        return LikelihoodTotals(*(a + b for a, b in zip(vars(self).values(), vars(other).values())))

    def summary(self) -> dict[str, float | None]:
        """The four likelihood metrics; None where nothing was scored (JSON has no NaN)."""
        values = {
            "perplexity": perplexity(self.response_nll, self.response_tokens),
            "bits_per_byte": bits_per_byte(self.response_nll, self.response_bytes),
            "sequence_perplexity": perplexity(self.sequence_nll, self.sequence_tokens),
            "sequence_bits_per_byte": bits_per_byte(self.sequence_nll, self.sequence_bytes),
        }
        return {name: round(value, 4) if math.isfinite(value) else None for name, value in values.items()}


@torch.inference_mode()
def token_log_likelihoods(
    model, sequences: Sequence[list[int]], batch_size: int, progress: str | None = None
) -> list[torch.Tensor]:
    """Log-probability of every token after the first, for each sequence (right-padded
    batches); with a `progress` label, a progress bar. The last token is only predicted, never
    fed, so a sequence may be one token longer than the context, as lm-eval's windows are."""
    results = []
    for start in batch_starts(len(sequences), batch_size, progress):
        batch = sequences[start : start + batch_size]
        input_ids, attention = pad_batch(batch, pad_id=0)  # padding is masked out and never scored
        fed, attention = input_ids[:, :-1].to(model.device), attention[:, :-1].to(model.device)
        log_probs = torch.log_softmax(model(input_ids=fed, attention_mask=attention).logits.float(), dim=-1)
        picked = log_probs.gather(-1, input_ids[:, 1:].to(model.device).unsqueeze(-1)).squeeze(-1).cpu()
        results.extend(picked[row, : len(ids) - 1] for row, ids in enumerate(batch))
    return results


def likelihood(
    model, tokenizer, rows: Sequence[dict], batch_size: int, progress: str | None = None
) -> list[LikelihoodTotals | None]:
    """Per example: negative log-likelihood of the reference answer (+ end of text) given the
    prompt, and of the whole example, with the token and UTF-8 byte counts they are divided by.
    None for an example longer than the model's context: cutting it would score part of the
    answer against all of its bytes."""
    limit = context_length(model)
    encoded = encode_instructions(rows, tokenizer, train_on_prompt=False)
    fitting = [index for index, (ids, _) in enumerate(encoded) if len(ids) <= limit]
    scored = token_log_likelihoods(model, [encoded[i][0] for i in fitting], batch_size, progress)
    log_probs = dict(zip(fitting, scored))
    totals: list[LikelihoodTotals | None] = []
    for index, (row, (_, targets)) in enumerate(zip(rows, encoded)):
        if index not in log_probs:
            totals.append(None)
            continue
        scores, response = log_probs[index], torch.tensor(targets[1:], dtype=torch.bool)
        prompt_text = template.render_row_prompt(row)
        totals.append(
            LikelihoodTotals(
                response_nll=-float(scores[response].sum()),
                response_tokens=int(response.sum()),
                response_bytes=len(row["output"].encode("utf-8")),
                sequence_nll=-float(scores.sum()),
                sequence_tokens=len(scores),
                sequence_bytes=len((prompt_text + row["output"]).encode("utf-8")),
            )
        )
    return totals


def _likelihood_summary(totals: Sequence[LikelihoodTotals | None]) -> dict[str, Any]:
    scored = [total for total in totals if total is not None]
    return {**sum(scored, LikelihoodTotals()).summary(), "too_long": len(totals) - len(scored)}


def multiple_choice_accuracy(model, tokenizer, items: Sequence[ChoiceItem], batch_size: int) -> dict[str, float]:
    """Accuracy by the summed log-likelihood of each option after the question's prompt
    (lm-evaluation-harness `acc`), and by that log-likelihood per character of the option
    (`acc_norm`: characters, not bytes), with the chance level. An option is scored as lm-eval's
    `hf` model scores a continuation: the prompt's trailing newline moves into it, so the
    newline's log-likelihood counts too. Being the same for every option, it changes no
    `accuracy`, but it costs short options more than long ones in `accuracy_norm`."""
    limit = context_length(model)
    sequences, spans = [], []
    for item in items:
        prompt = template.render_prompt(item.question)
        context_tokens = len(tokenizer(prompt.rstrip(), add_special_tokens=False)["input_ids"])
        for option in item.options:
            ids = tokenizer(prompt + option, add_special_tokens=False)["input_ids"]
            sequences.append(ids[-(limit + 1) :])  # a window of the context, and the token it predicts
            spans.append(len(ids) - context_tokens)
    option_scores = iter(
        float(scores[-span:].sum()) for scores, span in zip(token_log_likelihoods(model, sequences, batch_size), spans)
    )
    correct = correct_per_character = 0
    for item in items:
        totals = [next(option_scores) for _ in item.options]
        per_character = [total / len(option) for total, option in zip(totals, item.options)]
        correct += max(range(len(totals)), key=totals.__getitem__) == item.answer
        correct_per_character += max(range(len(per_character)), key=per_character.__getitem__) == item.answer
    return {
        "accuracy": round(correct / len(items), 4),
        "accuracy_norm": round(correct_per_character / len(items), 4),
        "chance": round(statistics.mean(1 / len(item.options) for item in items), 4),
        "items": len(items),
    }


def _mean(values: Sequence[float]) -> float | None:
    return round(statistics.mean(values), 4) if values else None


def decodings(params: EvaluateParams) -> dict[str, GenerationSettings]:
    """How `evaluate` answers: greedy, comparable across runs, first; then, with
    `sampled_answers`, sampled with the params' settings and seed (the chat's defaults)."""
    greedy = replace(GREEDY, max_new_tokens=params.max_new_tokens)
    if not params.sampled_answers:
        return {"greedy": greedy}
    sampled = replace(
        CHAT_SAMPLING,
        max_new_tokens=params.max_new_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=params.top_k,
        repetition_penalty=params.repetition_penalty,
        seed=params.seed,
    )
    return {"greedy": greedy, "sampled": sampled}


@dataclass
class Answers:
    """One decoding's answers to the generated rows, their checks and their summary."""

    answers: list[Generated]
    rouges: list[dict[str, float]]
    checks: list[AnswerChecks]
    summary: dict[str, Any]  # generation metrics, with the failure kinds under "errors"


def answer_and_score(
    model,
    tokenizer,
    rows: Sequence[dict],
    settings: GenerationSettings,
    batch_size: int,
    progress: str | None = None,
) -> Answers:
    started = time.perf_counter()
    answers = generate(
        model,
        tokenizer,
        [template.render_row_prompt(row) for row in rows],
        settings,
        batch_size,
        progress,
    )
    generation_seconds = time.perf_counter() - started
    hypotheses, references = [answer.text for answer in answers], [row["output"] for row in rows]
    rouges = rouge_scores(hypotheses, references)
    checks = [
        check_answer(answer.text, row["instruction"] + "\n" + row.get("input", ""), row["output"], answer.complete)
        for answer, row in zip(answers, rows)
    ]
    errors = Counter(kind for check in checks for kind in check.errors)
    languages = Counter(check.language for check in checks)
    summary = {
        "examples": len(rows),
        "decoding": describe(settings),
        **bleu_chrf(hypotheses, references),
        **{name: _mean([score[name] for score in rouges]) for name in ROUGE_TYPES},
        "coherence": _mean([check.coherence for check in checks]),
        "mean_new_tokens": _mean([answer.new_tokens for answer in answers]),
        "tokens_per_second": round(sum(answer.new_tokens for answer in answers) / generation_seconds, 1),
        "language": {verdict: languages[verdict] for verdict in ("right", "wrong", "unknown")},
        "errors": {kind: errors[kind] for kind in ERROR_KINDS},
    }
    return Answers(answers, rouges, checks, summary)


def _scored_answer(answer: Generated, rouge: dict[str, float], check: AnswerChecks) -> dict[str, Any]:
    return {
        "answer": answer.text,
        "complete": answer.complete,
        "rougeL": round(rouge["rougeL"], 4),
        "coherence": round(check.coherence, 4),
        "language": check.language,
        "errors": check.errors,
    }


def evaluate_rows(
    model,
    tokenizer,
    rows: Sequence[dict],
    decodings: Mapping[str, GenerationSettings],
    generate_count: int,
    batch_size: int,
    progress: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Likelihood metrics on every row; generation metrics on the first `generate_count` rows
    (all when 0), for each decoding. The first decoding's are `generation`, `errors` and the
    per-category scores; each other's go under its name. Returns the metrics and one record
    per generated row, with every decoding's answer. With a `progress` label, each part shows
    a progress bar named after it."""

    def part(name: str) -> str | None:
        return None if progress is None else f"{progress}: {name}"

    totals = likelihood(model, tokenizer, rows, batch_size, part("likelihood"))
    metrics: dict[str, Any] = {"examples": len(rows), **_likelihood_summary(totals)}

    # Answered: the first `generate_count` rows whose prompt fits beside the answer (a prompt is
    # never cut); the others are counted as too long, as the likelihood counts its own.
    chosen = list(rows if generate_count == 0 else rows[:generate_count])
    room = min(prompt_room(model, settings) for settings in decodings.values())
    answered_rows = [row for row in chosen if prompt_length(tokenizer, template.render_row_prompt(row)) <= room]
    (_, main), *others = (
        (name, answer_and_score(model, tokenizer, answered_rows, settings, batch_size, part(f"{name} answers")))
        for name, settings in decodings.items()
    )
    metrics["generation"] = {key: value for key, value in main.summary.items() if key != "errors"}
    metrics["generation"]["too_long"] = len(chosen) - len(answered_rows)
    metrics["errors"] = main.summary["errors"]
    for name, scored in others:
        metrics[name] = scored.summary

    def category(row: dict) -> str:
        return row.get("category") or "general"

    metrics["categories"] = {}
    for name in sorted({category(row) for row in rows}):
        answered = [i for i, row in enumerate(answered_rows) if category(row) == name]
        likelihoods = _likelihood_summary([total for total, row in zip(totals, rows) if category(row) == name])
        metrics["categories"][name] = {
            "examples": sum(category(row) == name for row in rows),
            "answers": len(answered),
            "perplexity": likelihoods["perplexity"],
            "bits_per_byte": likelihoods["bits_per_byte"],
            "rougeL": _mean([main.rouges[i]["rougeL"] for i in answered]),
            "coherence": _mean([main.checks[i].coherence for i in answered]),
        }

    samples = [
        {
            "id": row.get("id"),
            "category": row.get("category"),
            "instruction": row["instruction"],
            "input": row.get("input", ""),
            "reference": row["output"],
            **_scored_answer(main.answers[i], main.rouges[i], main.checks[i]),
            **{name: _scored_answer(scored.answers[i], scored.rouges[i], scored.checks[i]) for name, scored in others},
        }
        for i, row in enumerate(answered_rows)
    ]
    return metrics, samples


def validation_rows(data_dir: str | Path) -> list[dict]:
    """The validation split in the order both evaluation stages use: sorted by id (a hash), so
    the first `generate_examples` rows spread over sources and categories."""
    return sorted(read_split(Path(data_dir), "validation"), key=lambda row: row["id"])


def load_choice_items(path: str) -> list[ChoiceItem]:
    """Multiple-choice items from a JSONL file; a bad item names its file and line."""
    items = []
    for location, record in read_records(path, ErrorPolicy("fail")):
        try:
            items.append(parse_choice_item(record))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise MiniGPTError(f"{location}: {error}") from None
    return items


def evaluate_model(
    model,
    tokenizer,
    rows: Sequence[dict],
    choice_files: dict[str, str],
    decodings: Mapping[str, GenerationSettings],
    generate_count: int,
    batch_size: int,
    progress: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Everything `evaluate` reports: likelihood and generation metrics on `rows`, and
    multiple-choice accuracy on each file in `choice_files` (progress bars: see `evaluate_rows`).
    Without rows, multiple choice alone."""
    choices = {name: load_choice_items(path) for name, path in choice_files.items()}  # checked before the long part
    metrics, samples = {}, []
    if rows:
        metrics, samples = evaluate_rows(model, tokenizer, rows, decodings, generate_count, batch_size, progress)
    metrics["multiple_choice"] = {
        name: multiple_choice_accuracy(model, tokenizer, items, batch_size) for name, items in choices.items()
    }
    return metrics, samples
