"""Evaluation metrics, each defined here and nowhere else.

- Perplexity and bits per byte from the model's log-likelihood of the reference answers
  (and of whole examples). Bits per byte divide by UTF-8 bytes instead of tokens, so models
  with different tokenizers or vocabulary sizes compare fairly.
- BLEU and chrF (sacrebleu, corpus level, `intl` tokenization, signature recorded) and
  ROUGE-1/2/L F1 (rouge-score with a Unicode word tokenizer and no stemmer: its default
  tokenizer splits "información" into "informaci" + "n").
- Coherence in [0, 1]: relevance, repetition, completeness and language of a generated
  answer combined in one product (see `AnswerChecks.coherence`).
- Multiple choice scored by the log-likelihood of each option, as lm-evaluation-harness
  scores ARC and MMLU.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from minigpt.language import FUNCTION_WORDS, language_of, strip_accents

_WORD = re.compile(r"\w+")  # Unicode-aware: "información", "niña" and "pingüino" stay whole


class UnicodeWordTokenizer:
    """rouge-score tokenizer: lower-cased Unicode words, nothing stemmed or dropped."""

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.casefold())


def bleu_chrf(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float | str]:
    import sacrebleu

    bleu = sacrebleu.metrics.BLEU(tokenize="intl")
    chrf = sacrebleu.metrics.CHRF()
    bleu_score = bleu.corpus_score(list(hypotheses), [list(references)]).score
    chrf_score = chrf.corpus_score(list(hypotheses), [list(references)]).score
    return {
        "bleu": round(bleu_score, 4),
        "chrf": round(chrf_score, 4),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge_scores(hypotheses: Sequence[str], references: Sequence[str]) -> list[dict[str, float]]:
    """ROUGE-1/2/L F1 of each hypothesis against its reference."""
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(list(ROUGE_TYPES), use_stemmer=False, tokenizer=UnicodeWordTokenizer())
    return [
        {name: score.fmeasure for name, score in scorer.score(reference, hypothesis).items()}
        for hypothesis, reference in zip(hypotheses, references)
    ]


# --------------------------------------------------------------------------- coherence


def content_words(text: str) -> set[str]:
    """Lower-cased, accent-free words that are not function words ("París" and "paris" match)."""
    return {word for word in _WORD.findall(strip_accents(text.casefold())) if word not in FUNCTION_WORDS}


def repetition(text: str) -> float:
    """Share of repeated word trigrams (0: none repeated; near 1: a loop)."""
    words = _WORD.findall(text.casefold())
    trigrams = list(zip(words, words[1:], words[2:]))
    return 1 - len(set(trigrams)) / len(trigrams) if trigrams else 0.0


def relevance(answer: str, prompt: str, reference: str) -> float:
    """F1 of what the answer adds to the prompt against what the reference adds: content words
    not in the prompt (all the reference's, and all the answer's, when the reference adds none).
    Precision makes content the reference lacks cost ("Yakarta Madrid París Lima …" for the
    capital of Indonesia), recall makes missing content cost; restating the question costs
    nothing, and echoing it (or the template's own words) adds nothing and scores 0. "París"
    for "La capital de Francia es París" scores 1."""
    asked, answer_words, reference_words = content_words(prompt), content_words(answer), content_words(reference)
    expected, added = reference_words - asked, answer_words - asked
    if not expected:
        expected, added = reference_words, answer_words
    shared = len(added & expected)
    if not shared:
        return 0.0
    precision, recall = shared / len(added), shared / len(expected)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class AnswerChecks:
    empty: bool
    relevance: float
    repetition: float
    complete: bool  # the model ended the answer itself (end-of-text), not the token limit
    language: str  # "right"/"wrong": the reference's or not; "unknown": a text too short to tell
    content_words: int

    @property
    def coherence(self) -> float:
        """The coherence score in [0, 1]: a product, so each failure costs on its own.

            (0.5 + 0.5 × relevance) × (1 − repetition) × (1 if complete else 0.5)
                                    × (0.25 if in the wrong language else 1)

        and 0 for an empty answer. A relevant, fluent, finished answer in the reference's
        language scores near 1; an off-topic or truncated one at most 0.5, a wrong-language
        one at most 0.25, a loop as little as its share of repeated trigrams leaves. An answer
        whose language can't be told is not penalised, and is counted as unknown, not right.
        """
        if self.empty:
            return 0.0
        return (
            (0.5 + 0.5 * self.relevance)
            * (1 - self.repetition)
            * (1.0 if self.complete else 0.5)
            * (0.25 if self.language == "wrong" else 1.0)
        )

    @property
    def errors(self) -> list[str]:
        """The failure kinds counted by the error analysis."""
        if self.empty:
            return ["empty"]
        kinds = []
        if self.repetition >= 0.5:
            kinds.append("repetition_loop")
        if not self.complete:
            kinds.append("truncated")
        if self.relevance == 0 and self.content_words:  # even one wrong word ("Madrid" for Yakarta)
            kinds.append("off_topic")
        if self.language == "wrong":
            kinds.append("wrong_language")
        return kinds


ERROR_KINDS = ("empty", "repetition_loop", "truncated", "off_topic", "wrong_language")


def check_answer(answer: str, prompt: str, reference: str, complete: bool) -> AnswerChecks:
    """`prompt` is the instruction and input as written, without the template's markers."""
    words = content_words(answer)
    if not _WORD.search(answer):
        return AnswerChecks(
            empty=True, relevance=0.0, repetition=0.0, complete=complete, language="unknown", content_words=0
        )
    expected, found = language_of(reference), language_of(answer)
    return AnswerChecks(
        empty=False,
        relevance=relevance(answer, prompt, reference),
        repetition=repetition(answer),
        complete=complete,
        language="unknown" if expected is None or found is None else "right" if expected == found else "wrong",
        content_words=len(words),
    )


# --------------------------------------------------------------------------- likelihood summaries


def perplexity(nll_nats: float, tokens: int) -> float:
    return math.exp(nll_nats / tokens) if tokens else float("nan")


def bits_per_byte(nll_nats: float, utf8_bytes: int) -> float:
    return nll_nats / math.log(2) / utf8_bytes if utf8_bytes else float("nan")


# --------------------------------------------------------------------------- multiple choice

_OPTION = re.compile(r"^([A-Z])[.)]\s*(.+)$")
_ANSWER = re.compile(r"respuesta correcta es ([A-Z])\b")


@dataclass(frozen=True)
class ChoiceItem:
    question: str
    options: list[str]
    answer: int  # index of the right option


def parse_choice_item(row: dict) -> ChoiceItem:
    """An item either as {"question", "choices", "answer" (index)}, or in the data kit's
    instruction format: options "A. …" one per line in `input`, "La respuesta correcta es B…"
    in `output`. Repeated options are kept, as lm-eval keeps them, so that both score the same
    items (11 of the data kit's 5,961, from translation, repeat one)."""
    if "choices" in row:
        choices, answer, question = row["choices"], row["answer"], row["question"]
        if not isinstance(choices, list) or not all(isinstance(option, str) for option in choices):
            raise ValueError(f"'choices' must be a list of strings, got {choices!r}")  # "PR" is not two options
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"'question' must be a non-empty string, got {question!r}")
        options = [option.strip() for option in choices]
        if len(options) < 2 or not all(options):
            raise ValueError("'choices' must hold at least two non-empty options")
        if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(options):
            raise ValueError(f"'answer' must be the index of an option, 0 to {len(options) - 1}, got {answer!r}")
        return ChoiceItem(question, options, answer)
    options, letters = [], []
    for line in row["input"].splitlines():
        match = _OPTION.match(line.strip())
        if match:
            letters.append(match.group(1))
            options.append(match.group(2).strip())
    gold = _ANSWER.search(row["output"])
    if len(options) < 2 or gold is None or gold.group(1) not in letters:
        raise ValueError(
            "not a multiple-choice item: expected options 'A. …' in input and 'La respuesta correcta es X' in output"
        )
    return ChoiceItem(row["instruction"], options, letters.index(gold.group(1)))


# --------------------------------------------------------------------------- the compared scores


@dataclass(frozen=True)
class Score:
    """One metric runs are compared on: its key, its name in tables, which way is better, and
    whether it scores generated answers (found under `generation` in an evaluation's metrics)."""

    key: str
    label: str
    higher_is_better: bool
    generated: bool

    def of(self, metrics: dict) -> float | None:
        return (metrics["generation"] if self.generated else metrics)[self.key]

    def improved(self, change: float) -> bool:
        return change > 0 if self.higher_is_better else change < 0


# What `dvc exp show`, the report, evaluate_lora and `python -m minigpt evaluate` compare, in
# this order: adding a metric here (and to the evaluation) is all it takes.
SCORES = (
    Score("perplexity", "perplexity (answers)", higher_is_better=False, generated=False),
    Score("bits_per_byte", "bits per byte (answers)", higher_is_better=False, generated=False),
    Score("bleu", "BLEU", higher_is_better=True, generated=True),
    Score("chrf", "chrF", higher_is_better=True, generated=True),
    Score("rouge1", "ROUGE-1", higher_is_better=True, generated=True),
    Score("rouge2", "ROUGE-2", higher_is_better=True, generated=True),
    Score("rougeL", "ROUGE-L", higher_is_better=True, generated=True),
    Score("coherence", "coherence", higher_is_better=True, generated=True),
)


def compared_scores(metrics: dict) -> dict[str, float | None]:
    """An evaluation's SCORES, by key."""
    return {score.key: score.of(metrics) for score in SCORES}


def relative_changes(base: dict[str, float | None], other: dict[str, float | None]) -> dict[str, float | None]:
    """(other − base) / base for each of SCORES (None where a side is missing or base is 0)."""
    return {
        score.key: round((other[score.key] - base[score.key]) / base[score.key], 4)
        if base[score.key] and other[score.key] is not None
        else None
        for score in SCORES
    }
