"""The prompts, options and scores of the lm-evaluation-harness tasks in this folder, so that
`lm_eval --include_path lm_eval_tasks` scores what `python -m minigpt evaluate` scores.

lm-eval loads this file by its path, in an environment that need not have the project
installed, so the instruction format and the two multiple-choice item formats are spelled
again here; tests/test_lm_eval_tasks.py holds them to `minigpt.template` and
`minigpt.metrics.parse_choice_item`, item for item. Only the generation task's metrics import
the project (`minigpt.metrics` of this checkout): BLEU, chrF and ROUGE as `evaluate` defines
them, with a tokenizer that keeps accented words whole.
"""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent

# minigpt/template.py
EOS_TOKEN = "<|endoftext|>"
INSTRUCTION_HEADER = "### Instrucción:\n"
INPUT_HEADER = "### Entrada:\n"
RESPONSE_HEADER = "### Respuesta:\n"
SECTION_BREAK = "\n\n"

# minigpt/metrics.py: the data kit's item format
_OPTION = re.compile(r"^([A-Z])[.)]\s*(.+)$")
_ANSWER = re.compile(r"respuesta correcta es ([A-Z])\b")


def _request(instruction: str, input: str) -> str:
    text = INSTRUCTION_HEADER + instruction + SECTION_BREAK
    if input:
        text += INPUT_HEADER + input + SECTION_BREAK
    return text


def render_prompt(instruction: str, input: str = "") -> str:
    return _request(instruction, input) + RESPONSE_HEADER


def render_row_prompt(doc: dict) -> str:
    """A data row's prompt: its earlier turns (`history`, if any), then its instruction and input."""
    text = ""
    for turn in doc.get("history") or ():
        if turn["role"] == "user":
            text += _request(turn["content"], turn.get("input") or "")
        elif turn["role"] == "assistant":
            text += RESPONSE_HEADER + turn["content"] + EOS_TOKEN
        else:
            raise ValueError(f"unsupported chat role {turn['role']!r}: use 'user' or 'assistant'")
    return text + render_prompt(doc["instruction"], doc.get("input") or "")


def choice_item(doc: dict) -> tuple[str, list[str], int]:
    """Question, options and the right option's index of an item given as {"question", "choices",
    "answer"}, or in the data kit's format: options "A. …" one per line in `input`, "La respuesta
    correcta es B…" in `output`."""
    if doc.get("choices") is not None:
        return str(doc["question"]), [str(option).strip() for option in doc["choices"]], doc["answer"]
    options, letters = [], []
    for line in doc["input"].splitlines():
        match = _OPTION.match(line.strip())
        if match:
            letters.append(match.group(1))
            options.append(match.group(2).strip())
    gold = _ANSWER.search(doc["output"])
    if len(options) < 2 or gold is None or gold.group(1) not in letters:
        raise ValueError(f"not a multiple-choice item: {doc}")
    return doc["instruction"], options, letters.index(gold.group(1))


# The multiple-choice tasks: the question alone as the instruction, each option right after the
# response header (target_delimiter ""), as `evaluate` scores them.


def choice_prompt(doc: dict) -> str:
    return render_prompt(choice_item(doc)[0])


def choice_options(doc: dict) -> list[str]:
    return choice_item(doc)[1]


def choice_answer(doc: dict) -> int:
    return choice_item(doc)[2]


# The generation task: greedy answers to the validation split, scored against the reference.

GENERATION_METRICS = ("bleu", "chrf", "rouge1", "rouge2", "rougeL")


def generation_prompt(doc: dict) -> str:
    return render_row_prompt(doc)


def generation_scores(doc: dict, results: list[str]) -> dict[str, tuple[str, str]]:
    """(answer, reference) under every metric: each is computed over all answers at once."""
    answer = (results[0].strip(), doc["output"])  # `evaluate` strips answers too
    return {name: answer for name in GENERATION_METRICS}


def _project_metrics():
    """`minigpt.metrics` of this checkout, whether or not lm-eval's environment installed it."""
    if str(REPOSITORY) not in sys.path:
        sys.path.insert(0, str(REPOSITORY))
    from minigpt import metrics

    return metrics


def bleu(pairs: list[tuple[str, str]]) -> float:
    answers, references = zip(*pairs)
    return _project_metrics().bleu_chrf(answers, references)["bleu"]


def chrf(pairs: list[tuple[str, str]]) -> float:
    answers, references = zip(*pairs)
    return _project_metrics().bleu_chrf(answers, references)["chrf"]


def _mean_rouge(pairs: list[tuple[str, str]], name: str) -> float:
    answers, references = zip(*pairs)
    return round(statistics.mean(score[name] for score in _project_metrics().rouge_scores(answers, references)), 4)


def rouge1(pairs: list[tuple[str, str]]) -> float:
    return _mean_rouge(pairs, "rouge1")


def rouge2(pairs: list[tuple[str, str]]) -> float:
    return _mean_rouge(pairs, "rouge2")


def rougeL(pairs: list[tuple[str, str]]) -> float:
    return _mean_rouge(pairs, "rougeL")
