"""The report card: one Markdown page from every stage's metrics, with the revision and the
params that made them."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from typing import Any

import yaml

from minigpt.findings import DECODER, ENCODER, conclusions, format_stats
from minigpt.metrics import SCORES, Score, compared_scores

# What the doctoral project publishes, as published, beside the metric of ours it is closest to,
# with how the two definitions relate (its evaluation code is not published). Its data and
# tokenizer differ from any run's here: the numbers orient, they do not rank.
REFERENCE_METRICS = {
    "sequence_perplexity": (80.38, "assumed the same: its loss covered every token of an example"),
    "bleu": (1.44, "tokenization not published; ours: sacreBLEU, intl"),
    "rouge1": (0.171, "tokenizer not published; ours: Unicode words, no stemming"),
    "rougeL": (0.1096, "tokenizer not published; ours: Unicode words, no stemming"),
    "coherence": (0.6931, "different: its score is not defined; ours is docs/evaluation.md's"),
}
# Its data: examples per source (named as the seed preset names them), kept in all, and its split.
REFERENCE_DATA = {
    "sources": {"alpaca-es": 51_942, "oasst1-es": 14_038, "handwritten": 5},
    "kept": 57_471,
    "train": 54_597,
    "validation": 2_874,
}


def git_revision(outputs: Iterable[str] = ()) -> str:
    """Where the inputs came from. Under `dvc exp run`: the experiment's name and its baseline
    commit (DVC sets both). Otherwise the checked-out commit, marked modified when a file that is
    not a pipeline output (`outputs`, each a file or directory) differs from it or is new."""
    name, baseline = os.environ.get("DVC_EXP_NAME"), os.environ.get("DVC_EXP_BASELINE_REV")
    if name and baseline:
        return f"experiment `{name}` on commit `{baseline[:7]}`"
    try:
        commit = _git("rev-parse", "--short", "HEAD").strip()
        status = _git("status", "--porcelain", "-z", "--no-renames", "--untracked-files=all")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    outputs = [output.rstrip("/") for output in outputs]
    changed = [entry[3:] for entry in status.split("\0") if entry]
    changed = [path for path in changed if not any(path == out or path.startswith(out + "/") for out in outputs)]
    if not changed:
        return f"`{commit}`"
    more = f" and {len(changed) - 1} more file{'s' * (len(changed) > 2)}" if len(changed) > 1 else ""
    return f"`{commit}` with uncommitted changes to `{changed[0]}`{more}"


def declared_paths(stage: dict, *kinds: str) -> list[str]:
    """The paths a dvc.yaml stage lists under `kinds` (deps, outs, metrics, plots), written
    bare or as a mapping with options."""
    return [next(iter(entry)) if isinstance(entry, dict) else entry for kind in kinds for entry in stage.get(kind, [])]


def pipeline_outputs(dvc_yaml: str) -> list[str]:
    """What `dvc repro` writes: every stage's outs, metrics and plots, and the lock file."""
    stages = yaml.safe_load(dvc_yaml)["stages"].values()
    return ["dvc.lock", *(path for stage in stages for path in declared_paths(stage, "outs", "metrics", "plots"))]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def headline(train: dict, evaluation: dict, lora: dict, architectures: dict) -> dict[str, Any]:
    """The numbers runs are compared on, the reference project's first: what `dvc exp show`
    lists. Breakdowns stay in each stage's own file, which the report reads."""
    study = architectures["summary"]
    return {
        **compared_scores(evaluation),
        "multiple_choice": {name: score["accuracy"] for name, score in evaluation.get("multiple_choice", {}).items()},
        "train_loss": train["train_loss"],
        "val_loss": train["val_loss"],
        "tokens_per_second": train["tokens_per_second"],
        "parameters": train["parameters"],
        # LoRA: relative change on its own categories (negative is better for perplexity)
        "lora_perplexity_change": lora["domain"]["relative_change"]["perplexity"],
        "lora_coherence_change": lora["domain"]["relative_change"]["coherence"],
        "study_probe_accuracy": {name: study[name]["probe_accuracy"]["mean"] for name in study},
    }


def _reference(metric: str) -> tuple[float | None, str]:
    """The reference's number for one of our metrics, and how the definitions relate."""
    return REFERENCE_METRICS.get(metric, (None, "ours only"))


def _dropped(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in counts.items() if count) or "none"


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
        if isinstance(value, int):
            return f"{value:,}"
        return "–" if value is None else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def render_report(
    data: dict,
    tokenizer: dict,
    train: dict,
    evaluation: dict,
    samples: list[dict],
    params: dict,
    revision: str,
    lora: dict,
    architectures: dict,
    corpus: dict,
    pretrain: dict,
    sample_count: int = 5,
) -> str:
    parts = [
        "# MiniGPT-ES report card",
        f"Made from {revision}. Every number below is produced by `dvc repro` from the params at the end.",
        *_data_section(data),
        *_tokenizer_section(tokenizer),
        *_pretraining_section(corpus, pretrain),
        *_training_section(train),
        *_evaluation_section(evaluation),
        "### Sample answers",
        *_samples(samples[:sample_count]),
        *_lora_section(lora),
        *_architectures_section(architectures),
        "## Params",
        "```yaml\n" + yaml.safe_dump(params, allow_unicode=True, sort_keys=False).rstrip() + "\n```",
    ]
    return "\n\n".join(parts) + "\n"


def _data_section(data: dict) -> list[str]:
    return [
        "## Data",
        _table(
            ("", "read", "kept", "train", "validation", "dropped"),
            [
                (
                    "MiniGPT-ES",
                    data["examples"]["read"],
                    data["examples"]["kept"],
                    data["examples"]["train"],
                    data["examples"]["validation"],
                    _dropped(data["dropped"]),
                ),
                ("reference project", None, *(REFERENCE_DATA[key] for key in ("kept", "train", "validation")), None),
            ],
        ),
        "Per source; the reference column is the reference project's count of examples from its source of that name.",
        _table(
            (
                "source",
                "records",
                "examples",
                "kept",
                "of them follow-up turns",
                "history cut to fit",
                "dropped",
                "reference",
                "read at commit",
            ),
            [
                (
                    f"`{name}`",
                    counts["records"],
                    counts["examples"],
                    counts["kept"],
                    counts["kept_follow_ups"],
                    counts.get("history_trimmed"),
                    _dropped(counts.get("dropped", {})),
                    REFERENCE_DATA["sources"].get(name),
                    counts.get("commit"),
                )
                for name, counts in data["sources"].items()
            ],
        ),
    ]


def _tokenizer_section(tokenizer: dict) -> list[str]:
    learned = tokenizer.get("corpus_sample", {}).get("chars")
    return [
        "## Tokenizer",
        f"Vocabulary {tokenizer['vocab_size']:,}, learned from the train split"
        + (f" and {learned:,} characters of the corpus (not from its held-out documents)." if learned else "."),
        _table(
            ("text", "tokenizer", "chars/token", "tokens/word"),
            [
                (set_name, name, score["chars_per_token"], score["tokens_per_word"])
                for set_name, by_tokenizer in tokenizer["eval"].items()
                for name, score in by_tokenizer.items()
            ],
        ),
    ]


def _training_section(train: dict) -> list[str]:
    packing = train["packing"]["train"]
    return [
        "## Model and training",
        _table(
            ("parameters", "steps", "tokens", "train time", "tokens/s", "MFU", "device", "padding", "too long"),
            [
                (
                    train["parameters"],
                    train["steps"],
                    train["tokens"],
                    f"{train['train_seconds']:.0f} s",
                    train["tokens_per_second"],
                    f"{train['mfu']:.1%}" if train.get("mfu") else None,
                    f"{train['device']} × {train['processes']}",
                    f"{packing['padding_fraction']:.1%}",
                    f"{packing['truncated']} cut, {packing['dropped_too_long']} dropped",
                )
            ],
        ),
        "Loss per answer token: the first step's (the untrained model's), the last, and the share it fell by; "
        "validation loss at the end.",
        _table(
            ("initial train loss", "final train loss", "reduction", "validation loss"),
            [
                (
                    train.get("initial_train_loss"),
                    train["train_loss"],
                    f"{train['loss_reduction']:.1%}" if train.get("loss_reduction") is not None else None,
                    train["val_loss"],
                )
            ],
        ),
    ]


def _evaluation_section(evaluation: dict) -> list[str]:
    generation, sampled = evaluation["generation"], evaluation.get("sampled")
    same = ("(same)",) if sampled else ()  # likelihoods do not depend on the decoding
    # Each decoding's failure kinds and answer languages: greedy's, then sampled's if scored.
    scored = [("greedy", evaluation["errors"], generation["language"])]
    scored += [("sampled", sampled["errors"], sampled["language"])] if sampled else []
    parts = [
        "## Evaluation (validation split)",
        "Perplexity and bits per byte score the reference answers (the model's job); the sequence "
        f"columns score whole examples ({evaluation['too_long']} longer than the context left out); scored on "
        f"{evaluation.get('device', 'cpu')}. "
        f"Generation metrics score answers to {generation['examples']} examples: {generation['decoding']}"
        + (f"; beside them, {sampled['decoding']}, as the chat answers by default." if sampled else "."),
        _table(
            ("metric", "MiniGPT-ES", *(("sampled",) if sampled else ()), "reference project", "definitions"),
            [
                *(
                    (score.label, score.of(evaluation), *same, *_reference(score.key))
                    for score in SCORES
                    if not score.generated
                ),
                (
                    "perplexity (sequences)",
                    evaluation["sequence_perplexity"],
                    *same,
                    *_reference("sequence_perplexity"),
                ),
                *(
                    (
                        score.label,
                        score.of(evaluation),
                        *((sampled[score.key],) if sampled else ()),
                        *_reference(score.key),
                    )
                    for score in SCORES
                    if score.generated
                ),
                ("mean new tokens", generation["mean_new_tokens"], *((sampled["mean_new_tokens"],) if sampled else ()))
                + _reference("mean_new_tokens"),
            ],
        ),
        "The reference project's numbers are as it published them; they come from other data and another "
        "tokenizer, so they orient rather than rank.",
    ]
    if evaluation.get("multiple_choice"):
        parts += [
            "### Multiple choice",
            _table(
                ("set", "items", "accuracy", "accuracy per character", "chance"),
                [
                    (name, score["items"], score["accuracy"], score["accuracy_norm"], score["chance"])
                    for name, score in evaluation["multiple_choice"].items()
                ],
            ),
        ]
    return parts + [
        "### Per category",
        _table(
            ("category", "examples", "perplexity", "bits/byte", "answers", "ROUGE-L", "coherence"),
            [
                (name, s["examples"], s["perplexity"], s["bits_per_byte"], s["answers"], s["rougeL"], s["coherence"])
                for name, s in evaluation["categories"].items()
            ],
        ),
        "### Failure kinds",
        _table(
            ("decoding", "empty", "repetition loop", "truncated", "off topic", "wrong language"),
            [(name, *errors.values()) for name, errors, _ in scored],
        ),
        "Language of the answers (the reference's or not; unknown: too few words to tell): "
        + "; ".join(
            f"{name} " + ", ".join(f"{verdict} {count}" for verdict, count in languages.items())
            for name, _, languages in scored
        )
        + ".",
    ]


def _samples(samples: list[dict]) -> list[str]:
    def verdict(scored: dict) -> str:
        return ", ".join([f"coherence {scored['coherence']:.2f}", f"ROUGE-L {scored['rougeL']:.2f}", *scored["errors"]])

    parts = []
    for sample in samples:
        prompt = sample["instruction"] + (f"\n\n{sample['input']}" if sample["input"] else "")
        answers = [("answer (greedy)" if "sampled" in sample else "answer", sample)]
        answers += [("answer (sampled)", sample["sampled"])] if "sampled" in sample else []
        lines = [f"**{sample['category']}**: {prompt}", "", _quote("reference: " + sample["reference"])]
        for label, scored in answers:
            lines += [">", _quote(f"{label}: " + (scored["answer"] or "(empty)")), ">", f"> _{verdict(scored)}_"]
        parts.append("\n".join(lines))
    return parts


def _pretraining_section(corpus: dict, pretrain: dict) -> list[str]:
    if not pretrain.get("enabled"):
        return ["## Pretraining", "Off: `corpus.sources` is empty, so `train` starts from scratch."]
    budget = f"of a {corpus['max_tokens']:,}-token budget, " if corpus["max_tokens"] else ""
    return [
        "## Pretraining",
        f"The corpus: {sum(corpus['tokens'].values()):,} tokens {budget}in {sum(corpus['documents'].values()):,} "
        f"documents, {corpus['tokens']['validation']:,} tokens held out.",
        _table(
            ("source", "read at commit", "records", "documents", "tokens", "skipped", "budget reached"),
            [
                (
                    f"`{source['label']}`",
                    source.get("commit"),
                    source["records"],
                    source["documents"],
                    source["tokens"],
                    ", ".join(f"{reason} {count}" for reason, count in source["skipped"].items()) or "none",
                    source["budget_reached"],
                )
                for source in corpus["sources"]
            ],
        ),
        _table(
            ("steps", "tokens", "train time", "tokens/s", "MFU", "initial train loss", "final", "validation loss"),
            [
                (
                    pretrain["steps"],
                    pretrain["tokens"],
                    f"{pretrain['train_seconds']:.0f} s",
                    pretrain["tokens_per_second"],
                    f"{pretrain['mfu']:.1%}" if pretrain.get("mfu") else None,
                    pretrain["initial_train_loss"],
                    pretrain["train_loss"],
                    pretrain["val_loss"],
                )
            ],
        ),
    ]


def _lora_section(lora: dict) -> list[str]:
    subsets = [name for name in ("domain", "other", "general") if name in lora]
    rows = [
        (
            score.label,
            *(lora[subset][side][score.key] for subset in subsets for side in ("base", "lora")),
            *(_change(score, lora[subset]["relative_change"][score.key]) for subset in subsets),
        )
        for score in SCORES
    ]
    header = (
        "metric",
        *(f"{subset} {side}" for subset in subsets for side in ("base", "LoRA")),
        *(f"{subset} change" for subset in subsets),
    )
    sizes = ", ".join(f"{subset} {lora[subset]['examples']}" for subset in subsets)
    return [
        "## LoRA specialisation",
        f"Adapters for {', '.join(lora['categories'])}: {lora['trainable_share']:.2%} of the base's parameters "
        f"trainable, {lora['adapter_mb']} MB, trained in {lora['train_seconds']:.0f} s. Validation examples: "
        f"{sizes}. Domain: those categories (what the adapter should improve); other: the rest (what it may "
        "forget); general: all. Change = (LoRA − base) / base, and whether that is better or worse for the "
        "metric (lower perplexity and bits per byte, higher everything else).",
        _table(header, rows),
    ]


def _change(score: Score, change: float | None) -> str | None:
    if change is None:
        return None
    verdict = "same" if change == 0 else "better" if score.improved(change) else "worse"
    return f"{change:+.1%} ({verdict})"


def _architectures_section(metrics: dict) -> list[str]:
    shape, budget, summary = metrics["shape"], metrics["budget"], metrics["summary"]
    rows = [
        (label, *(format_stats(summary[name][metric]) for name in (ENCODER, DECODER)))
        for label, metric in (
            ("parameters", "parameters"),
            ("training tokens/s", "tokens_per_second"),
            ("category probe accuracy", "probe_accuracy"),
            ("probe accuracy, untrained", "untrained_probe_accuracy"),
            ("token accuracy (own task)", "token_accuracy"),
            ("perplexity (own task)", "perplexity"),
        )
    ]
    fills = [
        f"- {fill['text']!r}: {fill['answer']!r}; guesses {', '.join(map(repr, fill['guesses']))}"
        for fill in metrics["demos"][ENCODER]
    ]
    answers = [f"- {demo['instruction']} → {demo['answer'] or '(empty)'!r}" for demo in metrics["demos"][DECODER]]
    return [
        "## Encoder vs decoder",
        f"A BERT encoder (masked LM) and the project's GPT decoder, {shape['n_layer']} layers × {shape['n_head']} "
        f"heads × {shape['n_embd']}, context {shape['block_size']}, each trained for {budget['steps']} steps of "
        f"{budget['rows_per_step']} rows ({budget['tokens']:,} tokens) on the same rows, once per seed "
        f"({', '.join(map(str, budget['seeds']))}); mean ± standard deviation over seeds.",
        _table(("metric", "encoder", "decoder"), rows),
        "\n".join(f"- {line}" for line in conclusions(metrics)),
        "Encoder filling a blank (first seed):\n\n" + "\n".join(fills),
        "Decoder answering (first seed):\n\n" + "\n".join(answers),
    ]


def _quote(text: str) -> str:
    return "\n".join("> " + line for line in text.splitlines())
