"""Folders ready for the Hugging Face Hub: the model, and the adapter, each with a card that
carries the evaluation's results (`model-index`), the data it was trained on with the commits
read, and a sample conversation.

The card saved with `models/minigpt` is written by `train`, before evaluation exists; these
cards add what the later stages measured, read from their metrics and from `dvc.lock` (the
params each stage really ran with). The weights are hard-linked where the file system allows,
so a folder costs no second copy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from minigpt import paths
from minigpt.config import CorpusSource, Location, Source
from minigpt.errors import MiniGPTError
from minigpt.files import atomic_directory, read_jsonl
from minigpt.metrics import SCORES
from minigpt.model_card import EVALUATION_HEADING, LICENSE, TRANSFORMERS_NEEDED

LOCK_FILE = Path("dvc.lock")


def locked_stages(lock_file: Path = LOCK_FILE) -> dict[str, Any]:
    if not lock_file.is_file():
        raise MiniGPTError(f"{lock_file} not found: run 'dvc repro' first")
    return yaml.safe_load(lock_file.read_text(encoding="utf-8"))["stages"]


def _hash_of(entries: list[dict], path: Path) -> str | None:
    return next((entry.get("md5") for entry in entries if entry["path"] == path.as_posix()), None)


def check_evaluated(stages: dict[str, Any], output_stage: str, evaluation_stage: str, path: Path) -> None:
    """Refuse results measured on other weights than the ones `output_stage` last wrote."""
    written = _hash_of(stages.get(output_stage, {}).get("outs", []), path)
    scored = _hash_of(stages.get(evaluation_stage, {}).get("deps", []), path)
    if written is None or written != scored:
        raise MiniGPTError(
            f"{evaluation_stage} has not scored the {path} that {output_stage} last wrote: "
            f"run 'dvc repro {evaluation_stage}' first"
        )


def _stage_params(stages: dict[str, Any], stage: str) -> dict[str, Any]:
    return stages.get(stage, {}).get("params", {}).get("params.yaml", {}).get(stage, {})


def data_sources(stages: dict[str, Any], data: dict[str, Any], corpus: dict[str, Any]) -> list[dict[str, Any]]:
    """Every dataset the model learnt from, with the params `prepare` and `corpus` ran with:
    where it is (a Hub id or a local path), the commit read, how much was used."""
    found = []
    for raw in _stage_params(stages, "prepare").get("sources", []):
        source = Source.model_validate(raw)
        counts = data["sources"].get(source.label, {})
        used = f"{counts.get('kept', 0):,} examples"
        found.append(_source_entry("prepare", source, counts.get("commit"), used))
    corpus_sources = _stage_params(stages, "corpus").get("sources", [])
    for raw, counts in zip(corpus_sources, corpus.get("sources", [])):
        source = CorpusSource.model_validate(raw)
        found.append(_source_entry("corpus", source, counts.get("commit"), f"{counts.get('tokens', 0):,} tokens"))
    return found


def _source_entry(stage: str, source: Location, commit: str | None, used: str) -> dict[str, Any]:
    on_hub = source.hub is not None and not source.local_hub
    return {
        "stage": stage,
        "where": source.hub or source.path,
        "on_hub": on_hub,
        "commit": (commit or source.revision) if on_hub else (commit or "—"),
        "used": used,
    }


def _hub_ids(sources: list[dict[str, Any]]) -> list[str]:
    """Hub datasets by id, for the card's metadata (local folders and files are not on the Hub)."""
    return sorted({source["where"] for source in sources if source["on_hub"]})


def _model_index(name: str, scores: dict[str, float | None], dataset: str, task: str) -> list[dict]:
    return [
        {
            "name": name,
            "results": [
                {
                    "task": {"type": "text-generation", "name": task},
                    "dataset": {"type": dataset, "name": dataset, "split": "validation"},
                    "metrics": [
                        {"type": score.key, "name": score.label, "value": scores[score.key]}
                        for score in SCORES
                        if scores.get(score.key) is not None
                    ],
                }
            ],
        }
    ]


def _front_matter(fields: dict[str, Any]) -> str:
    return "---\n" + yaml.safe_dump(fields, allow_unicode=True, sort_keys=False) + "---\n"


def _body(card: str) -> str:
    """A card without its YAML front matter."""
    if card.startswith("---\n"):
        return card.split("\n---\n", 1)[1].lstrip("\n")
    return card


def _scores_table(columns: dict[str, dict[str, float | None]]) -> str:
    header = "| metric | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns) + "\n"
    rows = [
        f"| {score.label} | " + " | ".join(_format(values.get(score.key)) for values in columns.values()) + " |"
        for score in SCORES
    ]
    return header + "\n".join(rows)


def _format(value: float | None) -> str:
    return "—" if value is None else f"{value:,.4g}"


def _sources_table(sources: list[dict[str, str]]) -> str:
    rows = "\n".join(f"| {s['stage']} | `{s['where']}` | {s['commit']} | {s['used']} |" for s in sources)
    return "| stage | dataset | commit read | used |\n|---|---|---|---|\n" + rows


def _sample(samples: list[dict]) -> str:
    """The first evaluated answer that finished with no error kind, else the first."""
    chosen = next((s for s in samples if s.get("complete") and not s.get("errors")), samples[0] if samples else None)
    if chosen is None:
        return "(no answers were evaluated)"
    question = chosen["instruction"] + (f"\n\n{chosen['input']}" if chosen.get("input") else "")
    return (
        f"**Usuario:** {question}\n\n**MiniGPT-ES (greedy):** {chosen['answer']}\n\n"
        f"*Reference answer:* {chosen['reference']}"
    )


def model_card(
    train_card: str, evaluation: dict, samples: list[dict], sources: list[dict[str, Any]], repo_id: str
) -> str:
    """The model's card for the Hub: the train stage's card, its evaluation section filled with
    the results, the data and a sample conversation, its code loading from `repo_id`."""
    name = repo_id.rsplit("/", 1)[-1]
    scores = {score.key: score.of(evaluation) for score in SCORES}
    fields = {
        "language": ["es"],
        "license": LICENSE,
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["gpt2", "spanish", "instruction-following", "minigpt-es"],
        **({"datasets": datasets} if (datasets := _hub_ids(sources)) else {}),
        "model-index": _model_index(name, scores, "minigpt-es-validation", "Spanish instruction following"),
    }
    choices = evaluation.get("multiple_choice", {})
    choice_table = "".join(
        f"| {task} | {result['accuracy']:.3f} | {result['chance']:.3f} | {result['items']} |\n"
        for task, result in choices.items()
    )
    if choice_table:
        choice_table = (
            "\nMultiple choice, by the summed log-likelihood of each option:\n\n"
            "| task | accuracy | chance | items |\n|---|---|---|---|\n" + choice_table
        )
    results = f"""## Results

Greedy answers to {evaluation["generation"]["examples"]:,} examples of the validation split
(`metrics/eval.json`; perplexity over all {evaluation["examples"]:,}):

{_scores_table({name: scores})}
{choice_table}
## Training data

{_sources_table(sources)}

## Sample conversation

{_sample(samples)}

"""
    before, found, after = _body(train_card).partition(EVALUATION_HEADING + "\n")
    if not found:
        raise MiniGPTError(f"the model's README.md has no '{EVALUATION_HEADING}' section: retrain it with 'dvc repro'")
    rest = after[after.index("\n## ") + 1 :] if "\n## " in after else ""
    body = (before + results + rest).replace(f'"{paths.MODEL.as_posix()}"', f'"{repo_id}"')
    return _front_matter(fields) + "\n" + body


def adapter_card(lora: dict, base: str, name: str) -> str:
    """The LoRA adapter's card: what it specialises in and what it changed, base against adapter."""
    categories = ", ".join(lora["categories"])
    fields = {
        "language": ["es"],
        "license": LICENSE,
        "library_name": "peft",
        "base_model": base,
        "pipeline_tag": "text-generation",
        "tags": ["lora", "peft", "spanish", "minigpt-es"],
        "model-index": _model_index(
            name.rsplit("/", 1)[-1], lora["domain"]["lora"], "minigpt-es-validation", f"Spanish ({categories})"
        ),
    }
    tables = "\n\n".join(
        f"**{part}** ({lora[part]['examples']:,} validation examples):\n\n"
        + _scores_table({"base": lora[part]["base"], "base + LoRA": lora[part]["lora"]})
        for part in ("domain", "other", "general")
        if part in lora
    )
    return f"""{_front_matter(fields)}
# MiniGPT-ES LoRA: {categories}

A LoRA adapter for [{base}]({base}) trained by the MiniGPT-ES pipeline on the
{categories} examples: {lora["trainable_share"]:.2%} of the parameters trained, {lora["adapter_mb"]:.2f} MB.

```python
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer

model = AutoPeftModelForCausalLM.from_pretrained("{name}")
tokenizer = AutoTokenizer.from_pretrained("{name}")
```

## Results

Greedy answers, base model against base + adapter (`metrics/lora.json`): "domain" is the
validation examples of its categories, "other" the rest.

{tables}

## Requirements

`{TRANSFORMERS_NEEDED}` and `peft`.
"""


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target)


def _fill(source_dir: Path, target: Path, card: str) -> None:
    for path in sorted(source_dir.iterdir()):
        if path.is_file() and path.name != "README.md":
            _link_or_copy(path, target / path.name)
    (target / "README.md").write_text(card, encoding="utf-8")


REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


def export_hub(
    out: Path, repo_id: str, model_dir: Path = paths.MODEL, adapter_dir: Path = paths.ADAPTER
) -> dict[str, Path]:
    """`out/NAME` (the model) and, with a scored adapter, `out/NAME-lora`, by the Hub repository
    each is for. `repo_id` is where the model will live on the Hub (`user/name`)."""
    if not REPO_ID.fullmatch(repo_id):
        raise MiniGPTError(f"{repo_id!r} is not a Hub repository id: use USER/NAME")
    stages = locked_stages()
    check_evaluated(stages, "train", "evaluate", model_dir)
    evaluation = json.loads(paths.EVAL_METRICS.read_text(encoding="utf-8"))
    data = json.loads(paths.DATA_METRICS.read_text(encoding="utf-8"))
    corpus = json.loads(paths.CORPUS_METRICS.read_text(encoding="utf-8")) if paths.CORPUS_METRICS.is_file() else {}
    sources = data_sources(stages, data, corpus)
    samples = read_jsonl(paths.EVAL_SAMPLES) if paths.EVAL_SAMPLES.is_file() else []
    card = model_card((model_dir / "README.md").read_text(encoding="utf-8"), evaluation, samples, sources, repo_id)
    name = repo_id.rsplit("/", 1)[-1]
    written = {repo_id: out / name}
    with atomic_directory(out / name) as tmp:
        _fill(model_dir, tmp, card)
    if (adapter_dir / "adapter_config.json").is_file() and paths.LORA_METRICS.is_file():
        check_evaluated(stages, "lora", "evaluate_lora", adapter_dir)
        lora = json.loads(paths.LORA_METRICS.read_text(encoding="utf-8"))
        with atomic_directory(out / f"{name}-lora") as tmp:
            _fill(adapter_dir, tmp, adapter_card(lora, repo_id, f"{repo_id}-lora"))
            config = json.loads((tmp / "adapter_config.json").read_text(encoding="utf-8"))
            (tmp / "adapter_config.json").unlink()  # a link to the pipeline's file: never written through
            config["base_model_name_or_path"] = repo_id  # PEFT fetches the base from the Hub
            (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
        written[f"{repo_id}-lora"] = out / f"{name}-lora"
    return written
