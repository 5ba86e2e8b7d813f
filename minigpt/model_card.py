"""The model card (README.md) saved with models/minigpt: what the model is, how it was trained,
how to use it. Evaluation runs after the model is saved, so the card points to its metrics
instead of copying them."""

from __future__ import annotations

import math
from typing import Any

from minigpt.config import ModelParams, TrainParams
from minigpt.template import render_prompt

LICENSE = "mit"  # the repository's license, which its bundled data shares
# The tokenizer config names TokenizersBackend, a class transformers 4.x lacks.
TRANSFORMERS_NEEDED = "transformers>=5"
EVALUATION_HEADING = "## Evaluation"  # the section a Hub card fills with the results (minigpt/hub.py)

USAGE = """\
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{directory}")
model = AutoModelForCausalLM.from_pretrained("{directory}")
messages = [{{"role": "user", "content": "¿Qué es la fotosíntesis?"}}]
prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
output = model.generate(**inputs, max_new_tokens={max_new_tokens}, do_sample=False)
print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))"""


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, int) or abs(value) >= 10**digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def render_model_card(
    model: ModelParams, train: TrainParams, metrics: dict[str, Any], vocab_size: int, directory: str = "models/minigpt"
) -> str:
    """Markdown with Hugging Face metadata, from the train stage's params and metrics."""
    packing = metrics.get("packing", {})
    val_loss = metrics.get("val_loss")
    perplexity = math.exp(val_loss) if val_loss is not None else None
    started = (
        "the `pretrain` stage's weights (models/pretrained)" if train.init_from == "pretrained" else "random weights"
    )
    loss_on = "prompt and response tokens" if train.train_on_prompt else "response tokens only"
    rows = [
        ("initialised from", started),
        ("training examples", _number(packing.get("train", {}).get("sequences"))),
        ("validation examples", _number(packing.get("validation", {}).get("sequences"))),
        ("epochs / optimizer steps", f"{_number(train.epochs)} / {_number(metrics.get('steps'))}"),
        ("tokens seen", _number(metrics.get("tokens"))),
        ("peak learning rate, batch tokens", f"{train.learning_rate:g}, {train.batch_tokens:,}"),
        ("loss on", loss_on),
        (
            "device, processes, precision",
            f"{metrics.get('device', '—')}, {metrics.get('processes', '—')}, {metrics.get('precision', '—')}",
        ),
        (
            "train loss, first step → last",
            f"{_number(metrics.get('initial_train_loss'))} → {_number(metrics.get('train_loss'))}",
        ),
        ("validation loss (perplexity)", f"{_number(val_loss)} ({_number(perplexity)})"),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    parameters = _number(metrics.get("parameters"))
    return f"""---
language: es
license: {LICENSE}
library_name: transformers
pipeline_tag: text-generation
tags: [gpt2, spanish, instruction-following, minigpt-es]
---

# MiniGPT-ES

A GPT-2 decoder trained from scratch on Spanish instructions by the MiniGPT-ES pipeline
(`dvc repro`). It is small: its answers are often wrong, repetitive or invented. Use it to
study and vary the pipeline, not as a source of facts.

## Model

| layers | heads | width | context | vocabulary | parameters |
|---|---|---|---|---|---|
| {model.n_layer} | {model.n_head} | {model.n_embd} | {model.block_size} | {vocab_size:,} | {parameters} |

Embeddings are tied to the output layer; the tokenizer is a byte-level BPE trained on the
same Spanish data and ships a chat template.

## Training

| | |
|---|---|
{table}

The validation loss is per target token on packed validation rows (teacher forcing), so its
perplexity is not the evaluation's answer perplexity.

{EVALUATION_HEADING}

Evaluation runs after this model is saved: `dvc repro evaluate` writes perplexity, BLEU, chrF,
ROUGE, coherence and multiple-choice accuracy to `metrics/eval.json`, and `dvc repro report`
summarises everything in `metrics/report.md` (`dvc metrics show` lists them).

## Prompt format

```text
{render_prompt("¿Qué es la fotosíntesis?", "(optional input)")}…answer…<|endoftext|>
```

The `### Entrada:` section appears only when there is an input. A conversation is its turns
one after another, which is what the tokenizer's chat template produces.

## Use

```bash
python -m minigpt chat                         # a Spanish chat in the browser (http://127.0.0.1:7860)
python -m minigpt generate "¿Qué es la fotosíntesis?" --stream
```

With transformers alone (`{TRANSFORMERS_NEEDED}`):

```python
{USAGE.format(directory=directory, max_new_tokens=min(128, model.block_size // 4))}
```

`generation_config.json` is greedy with no repetition penalty and up to 128 new tokens: the
decoding of the evaluation's greedy answers and of `python -m minigpt generate`. Prompt and
answer together must fit the context of {model.block_size} tokens.
"""
