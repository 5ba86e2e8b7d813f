"""Encoder-only vs decoder-only: a BERT trained as a masked LM and the project's GPT trained on
next tokens, at the same shape and parameter count, on the same rows, steps and seeds.

What is compared, and how fairly:
- size: the encoder keeps the decoder's depth, width and heads; its MLP width is chosen so
  that the parameter counts match (BERT has a head transform, token types and biases GPT lacks);
- data and budget: the same packed rows of the same tokenizer, the same rows per step, steps,
  optimizer and schedule; each seed draws the same rows in the same order for both, and the
  order in which the two train alternates between seeds (the first run in a process is slower);
- what each learns: token accuracy and perplexity on validation rows *of its own task*, beside
  a unigram model of the same rows (what knowing only token frequencies gives);
- what their features know: a linear probe (multinomial logistic regression) on mean-pooled
  last-layer states predicts an example's category from its prompt, trained and untrained;
- what they can do: the decoder answers instructions, the encoder fills blanks.
Known confounds, reported with the results: BERT is post-LayerNorm with exact GELU (GPT:
pre-LayerNorm, tanh GELU), both share one learning rate and warmup, and the encoder is the
Hugging Face implementation while the decoder is the project's lean module.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from minigpt.config import ArchitecturesParams, RuntimeParams
from minigpt.decoding import GREEDY
from minigpt.findings import (
    COMPARED,
    DECODER,
    ENCODER,
    PER_TASK,
    chance_of_separation,
    separated,
    summarize,
)
from minigpt.generation import generate, inference_dtype, pick_device, prompt_length
from minigpt.model import GPT, IGNORE_INDEX, GPTConfig, init_model, to_hf
from minigpt.packing import PackedRows, pack_instructions, pad_batch
from minigpt.template import render_row_prompt
from minigpt.training import eta, learning_rate, make_optimizer

TIMED_AFTER = 3  # steps left out of the speed: allocation and warm-up, not architecture


def _autocast(device: torch.device):
    """bf16 on GPUs that have it (the seed-scale variant); fp32 elsewhere."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=inference_dtype(device) == torch.bfloat16)


def decoder_config(params: ArchitecturesParams, vocab_size: int) -> GPTConfig:
    return GPTConfig(
        vocab_size=vocab_size,
        block_size=params.block_size,
        n_layer=params.n_layer,
        n_head=params.n_head,
        n_embd=params.n_embd,
        dropout=params.dropout,
    )


def _bert_config(params: ArchitecturesParams, vocab_size: int, pad_id: int, intermediate_size: int):
    from transformers import BertConfig

    # One extra id for [MASK]; one token type; no pooler (BertForMaskedLM has none).
    return BertConfig(
        vocab_size=vocab_size + 1,
        hidden_size=params.n_embd,
        num_hidden_layers=params.n_layer,
        num_attention_heads=params.n_head,
        intermediate_size=intermediate_size,
        max_position_embeddings=params.block_size,
        type_vocab_size=1,
        pad_token_id=pad_id,
        hidden_dropout_prob=params.dropout,
        attention_probs_dropout_prob=params.dropout,
        tie_word_embeddings=True,
    )


def build_encoder(config, seed: int):
    from transformers import BertForMaskedLM

    torch.manual_seed(seed)
    return BertForMaskedLM(config)


def encoder_config(params: ArchitecturesParams, vocab_size: int, pad_id: int):
    """The BERT config whose parameter count is closest to the decoder's: the count is linear
    in the MLP width, so two counts give the width. Counted on the meta device (shapes only)."""

    def count(intermediate_size: int) -> int:
        with torch.device("meta"):
            return build_encoder(_bert_config(params, vocab_size, pad_id, intermediate_size), seed=0).num_parameters()

    with torch.device("meta"):
        target = GPT(decoder_config(params, vocab_size)).num_parameters()
    base = 4 * params.n_embd
    width = max(1, base + round((target - count(base)) / (count(base + 1) - count(base))))
    return _bert_config(params, vocab_size, pad_id, width)


def mask_tokens(
    tokens: torch.Tensor,
    valid: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    probability: float,
    generator: torch.Generator,
    corrupt: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption: each valid token is chosen with `probability`; with `corrupt`, a
    chosen token becomes [MASK] 80 % of the time, a random token 10 %, itself 10 %; without
    (scoring), always [MASK]. Returns (inputs, labels), IGNORE_INDEX where nothing is predicted."""
    where = dict(generator=generator, device=tokens.device)  # the generator lives where the tokens do
    chosen = (torch.rand(tokens.shape, **where) < probability) & valid
    labels = torch.where(chosen, tokens, torch.full_like(tokens, IGNORE_INDEX))
    kind = torch.rand(tokens.shape, **where) if corrupt else torch.zeros(tokens.shape, device=tokens.device)
    random_tokens = torch.randint(vocab_size, tokens.shape, **where)
    inputs = torch.where(chosen & (kind < 0.8), torch.full_like(tokens, mask_id), tokens)
    inputs = torch.where(chosen & (kind >= 0.8) & (kind < 0.9), random_tokens, inputs)
    return inputs, labels


@dataclass(frozen=True)
class Task:
    """One architecture's objective: a batch of packed rows -> (logits, labels) of the tokens
    it predicts, and the hidden states a probe reads."""

    name: str
    model: torch.nn.Module
    # (forward, rows, targets, generator, training) -> (logits, labels); `forward` is the model
    # or its compiled form
    predict: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    states: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (ids, attention) -> [batch, time, width]


def decoder_task(model: GPT) -> Task:
    def predict(forward, rows: torch.Tensor, targets: torch.Tensor, generator: torch.Generator, training: bool):
        rows, targets = rows.to(model.wte.weight.device), targets.to(model.wte.weight.device)
        labels = torch.where(targets[:, 1:], rows[:, 1:], torch.full_like(rows[:, 1:], IGNORE_INDEX))
        return forward(rows[:, :-1])[0], labels

    return Task(DECODER, model, predict, lambda ids, attention: model.hidden_states(ids))


def encoder_task(model, pad_id: int, probability: float) -> Task:
    mask_id = vocab_size = model.config.vocab_size - 1  # [MASK] is the id after the tokenizer's

    def predict(forward, rows: torch.Tensor, targets: torch.Tensor, generator: torch.Generator, training: bool):
        tokens = rows[:, :-1]  # the same block_size tokens the decoder reads
        valid = tokens != pad_id
        inputs, labels = mask_tokens(tokens, valid, mask_id, vocab_size, probability, generator, corrupt=training)
        device = model.device
        return forward(input_ids=inputs.to(device), attention_mask=valid.long().to(device)).logits, labels.to(device)

    def states(ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        return model.bert(input_ids=ids, attention_mask=attention).last_hidden_state

    return Task(ENCODER, model, predict, states)


def _generators(seed: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """Row order (on the CPU: the same rows on every device) and masking (on the training
    device: no host work per step): separate streams, none shared with another seed's."""
    return torch.Generator().manual_seed(2 * seed), torch.Generator(device=device).manual_seed(2 * seed + 1)


class StepTimer:
    """Seconds of each step without making the host wait for the GPU inside the loop: CUDA
    events there, read once at the end; the wall clock on a CPU, where nothing runs ahead."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: list = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def seconds(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize()
            return [start.elapsed_time(end) / 1000 for start, end in zip(self.marks, self.marks[1:])]
        return [end - start for start, end in zip(self.marks, self.marks[1:])]


def train(task: Task, rows: PackedRows, params: ArchitecturesParams, runtime: RuntimeParams, seed: int) -> dict:
    """Train on `params.steps` batches of rows drawn with `seed` (the same rows for every
    architecture); returns the loss curve and the median speed of the steps after TIMED_AFTER."""
    device = pick_device(runtime.device)
    model = task.model.to(device).train()
    forward = torch.compile(model, dynamic=False) if runtime.compile else model
    optimizer = make_optimizer(model, params, fused=device.type == "cuda")
    order, masking = _generators(seed, device)
    tokens, targets = rows.tokens.to(device), rows.targets.to(device)
    batches = torch.randint(len(rows), (params.steps, params.micro_batch_size), generator=order).to(device)
    losses, timer = [], StepTimer(device)
    timer.mark()
    for step in range(params.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, params.steps, params)
        with _autocast(device):  # (cross-entropy runs in fp32 under autocast)
            logits, labels = task.predict(forward, tokens[batches[step]], targets[batches[step]], masking, True)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)
        loss.backward()
        if params.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        timer.mark()
        if step % runtime.log_every == 0 or step == params.steps - 1:
            losses.append((step, loss.detach()))
    step_seconds = timer.seconds()
    curve = [(step, round(loss.item(), 4)) for step, loss in losses]
    timed = statistics.median(step_seconds[min(TIMED_AFTER, params.steps - 1) :])
    return {
        "curve": curve,
        "train_seconds": round(sum(step_seconds), 2),
        "tokens_per_second": round(params.micro_batch_size * params.block_size / timed, 1),
    }


@torch.inference_mode()
def token_scores(task: Task, rows: PackedRows, seed: int, batch_size: int = 32) -> dict:
    """Accuracy and perplexity of the tokens the task predicts on `rows`; blanks are drawn
    with a fixed generator and are all [MASK], so every model is scored on the same blanks."""
    task.model.eval()
    device = next(task.model.parameters()).device
    generator = torch.Generator().manual_seed(seed)  # on the CPU: the same blanks on every device
    total_loss, correct, count = 0.0, 0, 0
    for start in range(0, len(rows), batch_size):
        with _autocast(device):
            logits, labels = task.predict(
                task.model,
                rows.tokens[start : start + batch_size],
                rows.targets[start : start + batch_size],
                generator,
                False,
            )
        scored = labels != IGNORE_INDEX
        total_loss += F.cross_entropy(logits[scored].float(), labels[scored], reduction="sum").item()
        correct += (logits[scored].argmax(-1) == labels[scored]).sum().item()
        count += scored.sum().item()
    return {"token_accuracy": round(correct / count, 4), "perplexity": round(math.exp(total_loss / count), 2)}


def unigram_scores(train_rows: PackedRows, validation_rows: PackedRows, vocab_size: int) -> dict:
    """What knowing only token frequencies gives (add-one smoothed): the floor both must beat."""
    counts = torch.bincount(train_rows.tokens[train_rows.targets], minlength=vocab_size).double() + 1
    log_probabilities = (counts / counts.sum()).log()
    targets = validation_rows.tokens[validation_rows.targets]
    return {
        "token_accuracy": round((targets == counts.argmax()).double().mean().item(), 4),
        "perplexity": round(math.exp(-log_probabilities[targets].mean().item()), 2),
    }


@torch.inference_mode()
def pooled_features(task: Task, sequences: Sequence[list[int]], pad_id: int, batch_size: int = 64) -> torch.Tensor:
    """Mean of the last layer's states over each sequence's tokens, [sequences, width]."""
    model = task.model.eval()
    device = next(model.parameters()).device
    features = []
    for start in range(0, len(sequences), batch_size):
        ids, attention = pad_batch(sequences[start : start + batch_size], pad_id)
        with _autocast(device):
            states = task.states(ids.to(device), attention.to(device)).float()
        weights = attention.to(device).unsqueeze(-1).float()
        features.append(((states * weights).sum(1) / weights.sum(1)).cpu())
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


# --------------------------------------------------------------------------- the study


def _probe_sequences(rows: Sequence[dict], tokenizer, length: int) -> list[list[int]]:
    """The prompt of each example (instruction and input: what a classifier would see)."""
    texts = [render_row_prompt(row) for row in rows]
    return [ids[:length] for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _probe_accuracy(task: Task, probe_data: dict, pad_id: int) -> float:
    probe = fit_probe(
        pooled_features(task, probe_data["train"], pad_id), probe_data["train_labels"], probe_data["classes"]
    )
    predicted = probe.predict(pooled_features(task, probe_data["validation"], pad_id))
    return round((predicted == probe_data["validation_labels"]).float().mean().item(), 4)


def _one_per_category(rows: Sequence[dict], count: int) -> list[dict]:
    """Up to `count` examples, each of a different category (in the split's order)."""
    chosen: dict[str, dict] = {}
    for row in rows:
        chosen.setdefault(row["category"], row)
    return list(chosen.values())[:count]


def _answer_tokens(block_size: int) -> int:
    return min(48, block_size // 2)


def _demo_rows(rows: Sequence[dict], tokenizer, params: ArchitecturesParams) -> list[dict]:
    """One example per category whose prompt fits beside the decoder's answer (never cut)."""
    room = params.block_size - _answer_tokens(params.block_size)
    fitting = [row for row in rows if prompt_length(tokenizer, render_row_prompt(row)) <= room]
    return _one_per_category(fitting, params.demo_examples)


def _answers(task: Task, tokenizer, rows: Sequence[dict], block_size: int) -> list[dict]:
    """The decoder answers instructions, greedily, through the chat's generation code."""
    device = next(task.model.parameters()).device
    model = to_hf(task.model, tokenizer.eos_token_id, tokenizer.pad_token_id).to(device).eval()
    prompts = [render_row_prompt(row) for row in rows]
    answers = generate(model, tokenizer, prompts, replace(GREEDY, max_new_tokens=_answer_tokens(block_size)))
    return [{"instruction": row["instruction"], "answer": answer.text} for row, answer in zip(rows, answers)]


@torch.inference_mode()
def _fills(task: Task, tokenizer, rows: Sequence[dict], block_size: int) -> list[dict]:
    """The encoder fills one blank per reference answer: the middle token that starts a word."""
    model, mask_id = task.model.eval(), task.model.config.vocab_size - 1
    fills = []
    for row in rows:
        ids = tokenizer(row["output"], add_special_tokens=False)["input_ids"][:block_size]
        pieces = [tokenizer.decode([token]) for token in ids] + [" "]
        # A whole word: a token that starts one and is followed by the start of another (or the end).
        starts = [
            index
            for index in range(1, len(ids))
            if pieces[index].startswith(" ") and pieces[index].strip().isalpha() and not pieces[index + 1][:1].isalnum()
        ]
        if not starts:
            continue
        blank = starts[len(starts) // 2]
        masked = torch.tensor([ids[:blank] + [mask_id] + ids[blank + 1 :]], device=model.device)
        guesses = model(input_ids=masked).logits[0, blank].topk(3).indices.tolist()
        fills.append(
            {
                "text": tokenizer.decode(ids[:blank]) + " ____" + tokenizer.decode(ids[blank + 1 :]),
                "answer": tokenizer.decode([ids[blank]]).strip(),
                "guesses": [tokenizer.decode([guess]).strip() for guess in guesses],
            }
        )
    return fills


def run_study(
    params: ArchitecturesParams,
    runtime: RuntimeParams,
    tokenizer,
    train_split: Sequence[dict],
    validation_split: Sequence[dict],
    log: Callable[[str], None] = print,
) -> dict:
    """Train and score both architectures once per seed; the metrics file's content."""
    pad_id, vocab_size = tokenizer.pad_token_id, len(tokenizer)
    device = pick_device(runtime.device)
    row_length = params.block_size + 1
    # Open rows for both: the encoder has no causal mask to make block-diagonal, and the two
    # must see the same rows.
    train_rows, validation_rows = (
        pack_instructions(split, tokenizer, row_length, train_on_prompt=True, layout="open")
        for split in (train_split, validation_split)
    )
    probe_rows = list(train_split)
    if params.probe_examples:  # a seeded sample: the split is ordered by source, its head is one category
        probe_rows = random.Random(0).sample(probe_rows, min(params.probe_examples, len(probe_rows)))
    classes = sorted({row["category"] for row in [*probe_rows, *validation_split]})
    probe_data = {
        "train": _probe_sequences(probe_rows, tokenizer, params.block_size),
        "train_labels": torch.tensor([classes.index(row["category"]) for row in probe_rows]),
        "validation": _probe_sequences(validation_split, tokenizer, params.block_size),
        "validation_labels": torch.tensor([classes.index(row["category"]) for row in validation_split]),
        "classes": len(classes),
    }
    encoder = encoder_config(params, vocab_size, pad_id)
    builders = {
        DECODER: lambda seed: decoder_task(init_model(decoder_config(params, vocab_size), seed)),
        ENCODER: lambda seed: encoder_task(build_encoder(encoder, seed), pad_id, params.mask_probability),
    }
    runs: dict[str, list[dict]] = {DECODER: [], ENCODER: []}
    demos = {}
    warm_up = params.model_copy(update={"steps": TIMED_AFTER})
    for build in builders.values():  # the process's first steps are slow whoever takes them: nobody's result
        train(build(params.seeds[0]), train_rows, warm_up, runtime, params.seeds[0])
    started, total_runs = time.perf_counter(), len(params.seeds) * len(builders)
    for index, seed in enumerate(params.seeds):
        order = (DECODER, ENCODER) if index % 2 == 0 else (ENCODER, DECODER)
        for name in order:
            task = builders[name](seed)
            task.model.to(device)
            result = {
                "seed": seed,
                "parameters": task.model.num_parameters(),
                "untrained_probe_accuracy": _probe_accuracy(task, probe_data, pad_id),
            }
            result |= train(task, train_rows, params, runtime, seed)
            result |= token_scores(task, validation_rows, seed=params.seeds[0])
            result["probe_accuracy"] = _probe_accuracy(task, probe_data, pad_id)
            if index == 0:
                demo_rows = _demo_rows(validation_split, tokenizer, params)
                demos[name] = (_answers if name == DECODER else _fills)(task, tokenizer, demo_rows, params.block_size)
            runs[name].append(result)
            done = sum(map(len, runs.values()))
            left = (time.perf_counter() - started) / done * (total_runs - done)
            log(
                f"run {done}/{total_runs}, {name} seed {seed}: {result['tokens_per_second']:,.0f} tokens/s, token "
                f"accuracy {result['token_accuracy']:.3f}, probe {result['probe_accuracy']:.3f} "
                f"(untrained {result['untrained_probe_accuracy']:.3f}), eta {eta(left)}"
            )
    metrics = ("parameters", *COMPARED, *PER_TASK, "untrained_probe_accuracy")
    summary = {
        name: {metric: summarize([run[metric] for run in results]) for metric in metrics}
        for name, results in runs.items()
    }
    counts = torch.bincount(probe_data["validation_labels"], minlength=len(classes))
    return {
        "shape": {
            "n_layer": params.n_layer,
            "n_head": params.n_head,
            "n_embd": params.n_embd,
            "block_size": params.block_size,
            "encoder_intermediate_size": encoder.intermediate_size,
            "decoder_intermediate_size": 4 * params.n_embd,
        },
        "mask_probability": params.mask_probability,
        "device": device.type,
        "budget": {
            "steps": params.steps,
            "rows_per_step": params.micro_batch_size,
            "tokens": params.steps * params.micro_batch_size * params.block_size,
            "seeds": params.seeds,
            "train_rows": len(train_rows),
            "validation_rows": len(validation_rows),
        },
        "summary": summary,
        "comparisons": {
            metric: {
                "decoder_over_encoder": round(summary[DECODER][metric]["mean"] / summary[ENCODER][metric]["mean"], 3),
                "beyond_seed_spread": separated(summary[DECODER][metric], summary[ENCODER][metric]),
            }
            for metric in COMPARED
        },
        "training_moves_the_probe": {
            name: separated(summary[name]["probe_accuracy"], summary[name]["untrained_probe_accuracy"]) for name in runs
        },
        "chance_of_separation": round(chance_of_separation(len(params.seeds)), 3),
        "unigram": unigram_scores(train_rows, validation_rows, vocab_size),
        "probe": {
            "classes": classes,
            "train_examples": len(probe_rows),
            "validation_examples": len(validation_split),
            "majority_class_accuracy": round(counts.max().item() / counts.sum().item(), 4),
        },
        "runs": runs,
        "demos": demos,
    }
