"""Encoder-only vs decoder-only: a BERT trained as a masked LM and the project's GPT trained on
next tokens, at the same shape and parameter count, on the same rows, steps and seeds.

What is compared, and how fairly:
- size: the encoder keeps the decoder's depth, width and heads; its MLP width is chosen so
  that the parameter counts match (BERT has a head transform, token types and biases GPT lacks);
- data and budget: the same packed rows of the same tokenizer, the same rows per step, steps,
  optimizer and schedule; each seed draws the same rows in the same order for both;
- what each learns: token accuracy and perplexity on validation rows *of its own task*
  (a masked token sees both sides of the blank, a next token only its past: not one scale);
- what their features know: a linear probe (multinomial logistic regression) on mean-pooled
  last-layer states predicts an example's category from its prompt;
- what they can do: the decoder answers instructions, the encoder only fills blanks.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from minigpt.config import ArchitecturesParams
from minigpt.model import GPT, IGNORE_INDEX, GPTConfig
from minigpt.training import PackedRows, learning_rate, make_optimizer

ENCODER, DECODER = "encoder", "decoder"


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())  # tied weights count once


def decoder_config(params: ArchitecturesParams, vocab_size: int) -> GPTConfig:
    return GPTConfig(vocab_size=vocab_size, block_size=params.block_size, n_layer=params.n_layer,
                     n_head=params.n_head, n_embd=params.n_embd, dropout=params.dropout)


def _bert_config(params: ArchitecturesParams, vocab_size: int, pad_id: int, intermediate_size: int):
    from transformers import BertConfig

    # One extra id for [MASK]; one token type; no pooler (BertForMaskedLM has none).
    return BertConfig(vocab_size=vocab_size + 1, hidden_size=params.n_embd, num_hidden_layers=params.n_layer,
                      num_attention_heads=params.n_head, intermediate_size=intermediate_size,
                      max_position_embeddings=params.block_size, type_vocab_size=1, pad_token_id=pad_id,
                      hidden_dropout_prob=params.dropout, attention_probs_dropout_prob=params.dropout,
                      tie_word_embeddings=True)


def _count_bert(config) -> int:
    from transformers import BertForMaskedLM

    with torch.device("meta"):  # shapes only: instant even at 110M
        return count_parameters(BertForMaskedLM(config))


def encoder_config(params: ArchitecturesParams, vocab_size: int, pad_id: int):
    """The BERT config whose parameter count is closest to the decoder's: the count is linear
    in the MLP width, so two counts give the width."""
    with torch.device("meta"):
        target = count_parameters(GPT(decoder_config(params, vocab_size)))
    base = 4 * params.n_embd
    at_base = _count_bert(_bert_config(params, vocab_size, pad_id, base))
    per_unit = _count_bert(_bert_config(params, vocab_size, pad_id, base + 1)) - at_base
    width = max(1, base + round((target - at_base) / per_unit))
    return _bert_config(params, vocab_size, pad_id, width)


def build_encoder(config, seed: int):
    from transformers import BertForMaskedLM

    torch.manual_seed(seed)
    return BertForMaskedLM(config)


def mask_tokens(tokens: torch.Tensor, valid: torch.Tensor, mask_id: int, vocab_size: int, probability: float,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption: each valid token is chosen with `probability`; a chosen token becomes
    [MASK] 80 % of the time, a random token 10 %, itself 10 %. Returns (inputs, labels), with
    IGNORE_INDEX where nothing is predicted."""
    draw = torch.rand(tokens.shape, generator=generator)
    chosen = (draw < probability) & valid
    labels = torch.where(chosen, tokens, torch.full_like(tokens, IGNORE_INDEX))
    kind = torch.rand(tokens.shape, generator=generator)
    random_tokens = torch.randint(vocab_size, tokens.shape, generator=generator)
    inputs = torch.where(chosen & (kind < 0.8), torch.full_like(tokens, mask_id), tokens)
    inputs = torch.where(chosen & (kind >= 0.8) & (kind < 0.9), random_tokens, inputs)
    return inputs, labels


@dataclass(frozen=True)
class Task:
    """One architecture's objective: a batch of packed rows -> (logits, labels) of the tokens
    it predicts, and the hidden states a probe reads."""
    name: str
    model: torch.nn.Module
    predict: Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
    states: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (ids, attention) -> [batch, time, width]


def decoder_task(model: GPT) -> Task:
    def predict(rows: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        labels = torch.where(targets[:, 1:], rows[:, 1:], torch.full_like(rows[:, 1:], IGNORE_INDEX))
        return model(rows[:, :-1])[0], labels

    return Task(DECODER, model, predict, lambda ids, attention: model.hidden_states(ids))


def encoder_task(model, pad_id: int, probability: float) -> Task:
    mask_id = model.config.vocab_size - 1
    vocab_size = model.config.vocab_size - 1

    def predict(rows: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        tokens = rows[:, :-1]  # the same block_size tokens the decoder reads
        valid = tokens != pad_id
        inputs, labels = mask_tokens(tokens, valid, mask_id, vocab_size, probability, generator)
        return model(input_ids=inputs, attention_mask=valid.long()).logits, labels

    def states(ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        return model.bert(input_ids=ids, attention_mask=attention).last_hidden_state

    return Task(ENCODER, model, predict, states)


def _loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)


def train(task: Task, rows: PackedRows, params: ArchitecturesParams, seed: int) -> dict:
    """Train on `params.steps` batches of rows drawn with `seed` (the same rows for every
    architecture); returns the loss curve and the speed past the first step."""
    model = task.model.train()
    optimizer = make_optimizer(model, params, fused=False)
    order = torch.Generator().manual_seed(seed)
    masking = torch.Generator().manual_seed(seed + 1)
    curve, started = [], None
    for step in range(params.steps):
        if step == 1:
            started = time.perf_counter()  # the first step pays for allocation, not architecture
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, params.steps, params)
        batch = torch.randint(len(rows), (params.micro_batch_size,), generator=order)
        loss = _loss(*task.predict(rows.tokens[batch], rows.targets[batch], masking))
        loss.backward()
        if params.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % params.log_every == 0 or step == params.steps - 1:
            curve.append((step, round(loss.item(), 4)))
    seconds = time.perf_counter() - started if started else float("nan")
    tokens = (params.steps - 1) * params.micro_batch_size * params.block_size
    return {"curve": curve, "train_seconds": round(seconds, 2), "tokens_per_second": round(tokens / seconds, 1)}


@torch.inference_mode()
def token_scores(task: Task, rows: PackedRows, seed: int, batch_size: int = 32) -> dict:
    """Accuracy and perplexity of the tokens the task predicts on `rows` (masking drawn with
    a fixed generator, so every model is scored on the same blanks)."""
    model = task.model.eval()
    generator = torch.Generator().manual_seed(seed)
    total_loss, correct, count = 0.0, 0, 0
    for start in range(0, len(rows), batch_size):
        logits, labels = task.predict(rows.tokens[start:start + batch_size], rows.targets[start:start + batch_size],
                                      generator)
        scored = labels != IGNORE_INDEX
        total_loss += F.cross_entropy(logits[scored], labels[scored], reduction="sum").item()
        correct += (logits[scored].argmax(-1) == labels[scored]).sum().item()
        count += scored.sum().item()
    return {"token_accuracy": round(correct / count, 4), "perplexity": round(math.exp(total_loss / count), 2),
            "scored_tokens": count}


@torch.inference_mode()
def pooled_features(task: Task, sequences: Sequence[list[int]], pad_id: int, batch_size: int = 64) -> torch.Tensor:
    """Mean of the last layer's states over each sequence's tokens, [sequences, width]."""
    model = task.model.eval()
    features = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start:start + batch_size]
        width = max(len(ids) for ids in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, sequence in enumerate(chunk):
            ids[row, :len(sequence)] = torch.tensor(sequence)
            attention[row, :len(sequence)] = 1
        states = task.states(ids, attention)
        weights = attention.unsqueeze(-1).to(states.dtype)
        features.append((states * weights).sum(1) / weights.sum(1))
    return torch.cat(features)


@dataclass(frozen=True)
class Probe:
    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return (((features - self.mean) / self.scale) @ self.weight + self.bias).argmax(-1)


def fit_probe(features: torch.Tensor, labels: torch.Tensor, classes: int, l2: float = 1e-3, steps: int = 100) -> Probe:
    """Multinomial logistic regression on standardised features, L2-regularised, fit by L-BFGS."""
    mean, scale = features.mean(0), features.std(0).clamp_min(1e-6)
    x = (features - mean) / scale
    weight = torch.zeros(x.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, labels) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return Probe(weight.detach(), bias.detach(), mean, scale)


def summarize(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation and range over seeds."""
    return {"mean": round(statistics.fmean(values), 4), "std": round(statistics.stdev(values), 4),
            "min": min(values), "max": max(values), "values": list(values)}


def separated(first: dict, second: dict) -> bool:
    """Whether two summaries' seed ranges do not overlap: a difference larger than the
    seed-to-seed spread."""
    return first["max"] < second["min"] or second["max"] < first["min"]


# Compared between the architectures against the seed-to-seed spread (token accuracy with the
# caveat that each scores its own task); perplexity is reported per architecture only.
COMPARED = ("tokens_per_second", "probe_accuracy", "token_accuracy")
PER_TASK = ("perplexity",)


def _probe_sequences(rows: Sequence[dict], tokenizer, length: int) -> list[list[int]]:
    """The prompt of each example (instruction and input: what a classifier would see)."""
    from minigpt.template import render_prompt

    texts = [render_prompt(row["instruction"], row.get("input", "")) for row in rows]
    return [ids[:length] for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _probe_accuracy(task: Task, probe_data: dict, pad_id: int) -> float:
    train_features = pooled_features(task, probe_data["train"], pad_id)
    probe = fit_probe(train_features, probe_data["train_labels"], probe_data["classes"])
    validation_features = pooled_features(task, probe_data["validation"], pad_id)
    return round((probe.predict(validation_features) == probe_data["validation_labels"]).float().mean().item(), 4)


def _demonstrate(task: Task, tokenizer, rows: Sequence[dict], block_size: int) -> list[dict]:
    """The decoder answers instructions; the encoder fills a blank in a reference answer."""
    if task.name == DECODER:
        from minigpt.generation import GenerationSettings, generate
        from minigpt.model import to_hf
        from minigpt.template import render_prompt

        model = to_hf(task.model, tokenizer.eos_token_id, tokenizer.pad_token_id).eval()
        prompts = [render_prompt(row["instruction"], row.get("input", "")) for row in rows]
        answers = generate(model, tokenizer, prompts, GenerationSettings(max_new_tokens=min(48, block_size // 2)))
        return [{"instruction": row["instruction"], "answer": answer.text} for row, answer in zip(rows, answers)]
    model, mask_id = task.model.eval(), task.model.config.vocab_size - 1
    demos = []
    for row in rows:
        ids = tokenizer(row["output"], add_special_tokens=False)["input_ids"][:block_size]
        if len(ids) < 3:
            continue
        blank = len(ids) // 2
        masked = ids[:blank] + [mask_id] + ids[blank + 1:]
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([masked])).logits[0, blank]
        guesses = logits.topk(3).indices.tolist()
        demos.append({"text": tokenizer.decode(ids[:blank]) + " [MASK] " + tokenizer.decode(ids[blank + 1:]),
                      "answer": tokenizer.decode([ids[blank]]), "guesses": [tokenizer.decode([g]) for g in guesses]})
    return demos


def run_study(params: ArchitecturesParams, tokenizer, train_split: Sequence[dict], validation_split: Sequence[dict],
              log: Callable[[str], None] = print) -> dict:
    """Train and score both architectures once per seed; the metrics file's content."""
    from minigpt.training import encode_instructions, pack

    pad_id, vocab_size = tokenizer.pad_token_id, len(tokenizer)
    row_length = params.block_size + 1
    train_rows, validation_rows = (pack(encode_instructions(split, tokenizer, train_on_prompt=True), row_length, pad_id)
                                   for split in (train_split, validation_split))
    probe_rows = train_split[:params.probe_examples] if params.probe_examples else train_split
    classes = sorted({row["category"] for row in [*probe_rows, *validation_split]})
    probe_data = {
        "train": _probe_sequences(probe_rows, tokenizer, params.block_size),
        "train_labels": torch.tensor([classes.index(row["category"]) for row in probe_rows]),
        "validation": _probe_sequences(validation_split, tokenizer, params.block_size),
        "validation_labels": torch.tensor([classes.index(row["category"]) for row in validation_split]),
        "classes": len(classes)}
    encoder = encoder_config(params, vocab_size, pad_id)
    builders = {DECODER: lambda seed: decoder_task(_seeded_decoder(params, vocab_size, seed)),
                ENCODER: lambda seed: encoder_task(build_encoder(encoder, seed), pad_id, params.mask_probability)}
    runs: dict[str, list[dict]] = {DECODER: [], ENCODER: []}
    untrained, demos = {}, {}
    for seed in params.seeds:
        for name, build in builders.items():
            task = build(seed)
            if seed == params.seeds[0]:  # what a probe finds in random features: the floor training must beat
                untrained[name] = _probe_accuracy(task, probe_data, pad_id)
            result = {"seed": seed, "parameters": count_parameters(task.model)}
            result |= train(task, train_rows, params, seed)
            result |= token_scores(task, validation_rows, seed=params.seeds[0])
            result["probe_accuracy"] = _probe_accuracy(task, probe_data, pad_id)
            if seed == params.seeds[0]:
                demos[name] = _demonstrate(task, tokenizer, _one_per_category(validation_split, params.demo_examples),
                                           params.block_size)
            runs[name].append(result)
            log(f"{name} seed {seed}: {result['tokens_per_second']:,.0f} tokens/s, token accuracy "
                f"{result['token_accuracy']:.3f}, probe {result['probe_accuracy']:.3f}")
    summary = {name: {metric: summarize([run[metric] for run in results])
                      for metric in ("parameters", *COMPARED, *PER_TASK)} for name, results in runs.items()}
    counts = torch.bincount(probe_data["validation_labels"], minlength=len(classes))
    return {
        "shape": {"n_layer": params.n_layer, "n_head": params.n_head, "n_embd": params.n_embd,
                  "block_size": params.block_size, "encoder_intermediate_size": encoder.intermediate_size,
                  "decoder_intermediate_size": 4 * params.n_embd},
        "mask_probability": params.mask_probability,
        "budget": {"steps": params.steps, "rows_per_step": params.micro_batch_size,
                   "tokens": params.steps * params.micro_batch_size * params.block_size, "seeds": params.seeds,
                   "train_rows": len(train_rows), "validation_rows": len(validation_rows)},
        "summary": summary,
        "comparisons": {metric: {"decoder_over_encoder": round(summary[DECODER][metric]["mean"]
                                                               / summary[ENCODER][metric]["mean"], 3),
                                 "beyond_seed_spread": separated(summary[DECODER][metric], summary[ENCODER][metric])}
                        for metric in COMPARED},
        "probe": {"classes": classes, "train_examples": len(probe_rows), "validation_examples": len(validation_split),
                  "majority_class_accuracy": round(counts.max().item() / counts.sum().item(), 4),
                  "untrained_accuracy": untrained},
        "runs": runs,
        "demos": demos,
    }


def _one_per_category(rows: Sequence[dict], count: int) -> list[dict]:
    """Up to `count` examples, each of a different category (in the split's order)."""
    chosen: dict[str, dict] = {}
    for row in rows:
        chosen.setdefault(row["category"], row)
    return list(chosen.values())[:count]


def _seeded_decoder(params: ArchitecturesParams, vocab_size: int, seed: int) -> GPT:
    from minigpt.model import init_model

    return init_model(decoder_config(params, vocab_size), seed)


def conclusions(metrics: dict) -> list[str]:
    """The study's findings in plain words, each backed by its numbers."""
    summary, comparisons, probe = metrics["summary"], metrics["comparisons"], metrics["probe"]
    decoder, encoder = summary[DECODER], summary[ENCODER]
    seeds = len(metrics["budget"]["seeds"])

    def spread(metric: str) -> str:
        beyond = comparisons[metric]["beyond_seed_spread"]
        return (f"larger than the seed-to-seed spread (the {seeds} seeds' ranges do not overlap)" if beyond
                else f"within the seed-to-seed spread (the {seeds} seeds' ranges overlap): not a finding")

    def value(name: str, metric: str, digits: int = 3) -> str:
        stats = summary[name][metric]
        return f"{stats['mean']:,.{digits}f} ± {stats['std']:,.{digits}f}"

    speed = comparisons["tokens_per_second"]["decoder_over_encoder"]
    gains = {name: summary[name]["probe_accuracy"]["mean"] - probe["untrained_accuracy"][name] for name in (ENCODER, DECODER)}
    return [
        f"Size: decoder {decoder['parameters']['mean']:,.0f} and encoder {encoder['parameters']['mean']:,.0f} parameters "
        f"(the encoder's MLP is {metrics['shape']['encoder_intermediate_size']} wide instead of "
        f"{metrics['shape']['decoder_intermediate_size']} to match).",
        f"Training speed: the decoder processes {speed:.2f}× the encoder's tokens per second "
        f"({value(DECODER, 'tokens_per_second', 0)} vs {value(ENCODER, 'tokens_per_second', 0)}); {spread('tokens_per_second')}.",
        f"Features: a linear probe predicts an example's category from mean-pooled states with accuracy "
        f"{value(ENCODER, 'probe_accuracy')} on the encoder and {value(DECODER, 'probe_accuracy')} on the decoder "
        f"(majority class {probe['majority_class_accuracy']:.3f}; untrained networks "
        f"{probe['untrained_accuracy'][ENCODER]:.3f} and {probe['untrained_accuracy'][DECODER]:.3f}); "
        f"the difference is {spread('probe_accuracy')}. Training adds {gains[ENCODER]:+.3f} (encoder) and "
        f"{gains[DECODER]:+.3f} (decoder) to what random features give: the categories come from keyword rules, "
        "so the words alone go a long way.",
        f"Own tasks: the encoder recovers {value(ENCODER, 'token_accuracy')} of masked tokens (perplexity "
        f"{value(ENCODER, 'perplexity', 1)}), the decoder predicts {value(DECODER, 'token_accuracy')} of next tokens "
        f"(perplexity {value(DECODER, 'perplexity', 1)}); the gap is {spread('token_accuracy')}, but not on one scale: a blank is predicted from both sides, a "
        f"next token from its past only; and the encoder learns from the {metrics['mask_probability']:.0%} of tokens "
        f"it masks while the decoder learns from every token, {1 / metrics['mask_probability']:.1f}× the training "
        "signal from the same tokens.",
        "Use: only the decoder answers an instruction, left to right; the encoder can fill blanks in text it is "
        "given (see the examples) but has no way to continue one.",
    ]
