"""Instruction data: cleaning, de-duplication, categories and the split.

Every source is read into `Example`s by the reader of its kind (`minigpt/sources/`); `prepare`
then cleans, filters, labels and splits them, counting what each step did.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from minigpt.config import PrepareParams
from minigpt.errors import MiniGPTError
from minigpt.files import read_jsonl
from minigpt.language import is_spanish, strip_accents
from minigpt.sources import read_source
from minigpt.sources.base import Example
from minigpt.sources.formats import ErrorPolicy, Record, resolve_revision
from minigpt.template import INVISIBLE

# --------------------------------------------------------------------------- cleaning

_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")  # line-ish ones are left to whitespace
_SPECIAL_SPACE = re.compile(r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_LINE_SEPARATOR = re.compile(r"\r\n?|[\u2028\u2029\x85\x0b\x0c]")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n{3,}")
_LEADING_BLANK_LINES = re.compile(r"^(?:[ \t]*\n)+")


def normalize_whitespace(text: str) -> str:
    """Plain spaces and \\n line ends, no trailing spaces, at most one blank line in a row.

    Leading indentation inside the text is kept (code needs it); a one-line text is stripped.
    """
    text = _LINE_SEPARATOR.sub("\n", text)
    text = _SPECIAL_SPACE.sub(" ", text)
    text = _TRAILING_SPACE.sub("", text)
    text = _BLANK_LINES.sub("\n\n", text)
    text = _LEADING_BLANK_LINES.sub("", text).rstrip()
    return text if "\n" in text else text.strip()


def clean_text(text: str, changes: Counter) -> str:
    """Apply every text rule, counting in `changes` which ones altered something."""
    for rule, apply in _TEXT_RULES:
        cleaned = apply(text)
        if cleaned != text:
            changes[rule] += 1
            text = cleaned
    return text


# NFC comes last: removing an invisible character can bring a letter and its accent together.
_TEXT_RULES: list[tuple[str, Callable[[str], str]]] = [
    ("control_characters", lambda text: _CONTROL.sub("", text.translate(INVISIBLE))),
    ("whitespace", normalize_whitespace),
    ("unicode_nfc", lambda text: unicodedata.normalize("NFC", text)),
]


def clean_example(example: Example, changes: Counter) -> Example:
    """Clean every text field; an example counts once per rule however many fields changed."""
    per_example: Counter = Counter()
    cleaned = Example(
        instruction=clean_text(example.instruction, per_example),
        input=clean_text(example.input, per_example),
        output=clean_text(example.output, per_example),
        source=example.source,
        category=example.category.strip(),
        history=tuple((role, clean_text(text, per_example)) for role, text in example.history),
    )
    changes.update(per_example.keys())
    return cleaned


_TYPOGRAPHIC = re.compile(r"[¿¡«»“”‘’…]")
_SENTENCE_PUNCTUATION = re.compile(r"[.,;:?!]+(?=\s|$)")
_SPACES = re.compile(r"\s+")


def normalize_key(*texts: str) -> str:
    """Key for de-duplication and the split: ignores case, accents, spacing, typographic
    marks and sentence punctuation, but keeps digits, operators and code symbols, so that
    "2 + 2" and "2 × 2" stay different."""
    no_accents = strip_accents(" ".join(texts).casefold())
    no_marks = _SENTENCE_PUNCTUATION.sub("", _TYPOGRAPHIC.sub("", no_accents))
    return _SPACES.sub(" ", no_marks).strip()


# --------------------------------------------------------------------------- categories, split


def _keyword_pattern(keywords: list[str]) -> re.Pattern | None:
    """Keywords match whole words; a trailing * matches any word that starts with the keyword
    ("program*" matches "programación", "resta" does not match "restaurante")."""
    alternatives = []
    for keyword in keywords:
        stem = normalize_key(keyword.rstrip("*"))
        if stem:
            alternatives.append(re.escape(stem) + ("" if keyword.endswith("*") else r"\b"))
    return re.compile(r"\b(?:" + "|".join(alternatives) + ")") if alternatives else None


class CategoryRules:
    """Labels examples: a source's own label if it is a known category, else the first
    category whose keywords occur in the instruction or input, else the default."""

    def __init__(self, rules: dict[str, list[str]], default: str):
        self.patterns = [(name, _keyword_pattern(keywords)) for name, keywords in rules.items()]
        self.known = set(rules) | {default}
        self.default = default

    def assign(self, example: Example) -> tuple[str, str]:
        """(category, origin) where origin is 'source', 'rules' or 'default'."""
        if example.category in self.known:
            return example.category, "source"
        text = normalize_key(example.thread_start().instruction, example.instruction, example.input)
        for name, pattern in self.patterns:
            if pattern is not None and pattern.search(text):
                return name, "rules"
        return self.default, "default"


def _hash_fraction(key: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_key(example: Example, split_by: str) -> str:
    """The text that decides the split: the normalised prompt, instruction, or input and answer
    in either order ("pair": a translation and its reverse share a split)."""
    if split_by == "pair":
        return _pair_key(example)
    return (
        normalize_key(example.instruction, example.input)
        if split_by in ("prompt", "group")
        else normalize_key(example.instruction)
    )


def _pair_key(example: Example) -> str:
    return "\x00".join(sorted((normalize_key(example.input), normalize_key(example.output))))


def _split_of(key: str, params: PrepareParams) -> str:
    return "validation" if _hash_fraction(key, params.split_seed) < params.validation_fraction else "train"


def split_groups(examples: list[Example], params: PrepareParams) -> list[str]:
    """The key that decides each example's split, from a hash: examples with the same key
    always share a split. A conversation's turns all take the key of its first turn.

    `instruction`, `prompt`, `pair`: the choice depends on nothing but the example's own text,
    so adding or removing a source never moves another example between splits, and equal keys
    always share a split. `group`: examples that share a prompt, or (when they have an input)
    the same input and answer in either order, are linked, and every linked group takes the
    split of its smallest key, so no prompt, pair or reversed pair is in both splits; a new
    example moves others only when it links their groups.
    """
    examples = [example.thread_start() for example in examples]  # a conversation's turns share a split
    if params.split_by != "group":
        return [split_key(example, params.split_by) for example in examples]
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]  # path halving
            key = parent[key]
        return key

    keys = [
        [split_key(example, "group"), *(["\x01" + _pair_key(example)] if example.input else [])] for example in examples
    ]
    for first, *others in keys:
        for other in others:
            a, b = root(first), root(other)
            if a != b:
                parent[max(a, b)] = min(a, b)  # the root is always the group's smallest key
    return [root(first) for first, *_ in keys]


def split_problem(groups: list[str], examples: list[Example], params: PrepareParams, duplicates: int) -> str | None:
    """Why the split leaves train or validation without a single example (the largest group
    that must share a split, duplicates dropped, too few groups), or None when both have some."""
    splits = Counter(_split_of(group, params) for group in groups)
    empty = [split for split in ("train", "validation") if not splits[split]]
    if not empty:
        return None
    group, size = Counter(groups).most_common(1)[0]
    first = examples[groups.index(group)]
    causes = []
    if size > 1:
        causes.append(
            f"the largest group of examples that must share a split (split_by: {params.split_by}) holds "
            f"{size:,} of the {len(groups):,}, e.g. {first.instruction[:60]!r}"
        )
    if duplicates:
        causes.append(f"{duplicates:,} examples were dropped as duplicates")
    count = len(set(groups))
    causes.append(f"{count:,} group{'s' * (count != 1)} to split at validation_fraction {params.validation_fraction}")
    return (
        f"the split leaves {' and '.join(empty)} empty ({splits['train']:,} train, {splits['validation']:,} "
        f"validation): {'; '.join(causes)}. Change prepare.split_by or prepare.split_seed, or add examples"
    )


def example_id(example: Example) -> str:
    return hashlib.sha256(normalize_key(*example.texts()).encode()).hexdigest()[:16]


def example_row(example: Example, category: str) -> Record:
    """An example as a line of data/processed; `history` ({"role", "content"} messages, as
    the chat template takes them) only when it has one."""
    row = {
        "id": example_id(example),
        "instruction": example.instruction,
        "input": example.input,
        "output": example.output,
        "source": example.source,
        "category": category,
    }
    if example.history:
        row["history"] = [{"role": role, "content": text} for role, text in example.history]
    return row


# --------------------------------------------------------------------------- the prepare step


@dataclass
class PreparedData:
    splits: dict[str, list[Record]]
    stats: dict[str, Any]
    warnings: list[str] = field(default_factory=list)  # sources that lost too much (`source_losses`)
    # Why a split is empty (`split_problem`): the stage refuses to write such splits; tests and
    # tools that look at a few examples read the counts anyway.
    split_problem: str | None = None


def prepare(params: PrepareParams) -> PreparedData:
    """Read every source, clean, filter, de-duplicate, label and split; count each step."""
    policy = ErrorPolicy(params.on_error, hint=" (set prepare.on_error: skip to skip such records)")
    rules = CategoryRules(params.categories, params.default_category)
    changes: Counter = Counter()
    dropped: Counter = Counter()
    per_source: dict[str, dict[str, int]] = {}
    origins: Counter = Counter()
    seen_exact: set[tuple[str, ...]] = set()
    seen_normalized: set[str] = set()
    kept_examples: list[Example] = []
    rows: list[Record] = []
    splits: dict[str, list[Record]] = {"train": [], "validation": []}

    skipped_kinds: dict[str, Counter] = {}
    for source in params.sources:
        skipped_before = policy.skipped.copy()
        counts = per_source.setdefault(
            source.label,
            {
                "records": 0,
                "skipped_records": 0,
                "examples": 0,
                "kept": 0,
                "kept_follow_ups": 0,
                "history_trimmed": 0,
                "dropped": dict.fromkeys(DROP_REASONS, 0),
            },
        )
        if source.hub:  # read at the commit the revision names now, and say which
            commit = resolve_revision(source)
            counts["commit"] = commit or "local folder"
            source = source.model_copy(update={"revision": commit or source.revision})
        examples, records = read_source(source, policy)
        counts["records"] += records
        skipped_kinds[source.label] = skipped_kinds.get(source.label, Counter()) + (policy.skipped - skipped_before)
        counts["skipped_records"] = sum(skipped_kinds[source.label].values())
        counts["examples"] += len(examples)
        for raw in examples:
            example = fit_history(clean_example(raw, changes), params.max_chars)
            reason = _drop_reason(example, params, seen_exact, seen_normalized)
            if reason:
                dropped[reason] += 1
                counts["dropped"][reason] += 1
                continue
            category, origin = rules.assign(example)
            origins[origin] += 1
            kept_examples.append(example)
            rows.append(example_row(example, category))
            counts["kept"] += 1
            counts["kept_follow_ups"] += bool(raw.history)  # later turns of a conversation
            counts["history_trimmed"] += len(example.history) < len(raw.history)
    groups = split_groups(kept_examples, params)
    for group, row in zip(groups, rows):
        splits[_split_of(group, params)].append(row)
    warnings = source_losses(per_source, skipped_kinds, params.max_skipped_share)
    if warnings and params.on_source_loss == "fail":
        raise MiniGPTError("; ".join(warnings) + " (set prepare.on_source_loss: warn to go on with what is left)")

    kept = sum(len(rows) for rows in splits.values())
    if kept == 0:
        raise MiniGPTError(
            "no example survived cleaning: check prepare.sources and the filters in params.yaml "
            f"(dropped: {dict(dropped) or 'none'}, skipped records: {dict(policy.skipped) or 'none'})"
        )
    stats = {
        "examples": {
            "read": sum(counts["examples"] for counts in per_source.values()),
            "kept": kept,
            "train": len(splits["train"]),
            "validation": len(splits["validation"]),
        },
        "sources": per_source,
        "skipped_records": dict(sorted(policy.skipped.items())),
        "cleaning": {rule: changes[rule] for rule, _ in _TEXT_RULES},
        "dropped": {reason: dropped[reason] for reason in DROP_REASONS},
        "category_origin": {origin: origins[origin] for origin in ("source", "rules", "default")},
        "categories": {
            name: {split: sum(row["category"] == name for row in rows) for split, rows in splits.items()}
            for name in sorted({row["category"] for rows in splits.values() for row in rows})
        },
    }
    duplicates = dropped["exact_duplicate"] + dropped["normalized_duplicate"]
    problem = split_problem(groups, kept_examples, params, duplicates)
    return PreparedData(splits=splits, stats=stats, warnings=warnings, split_problem=problem)


def source_losses(
    per_source: dict[str, dict], skipped_kinds: dict[str, Counter], max_skipped_share: float
) -> list[str]:
    """A sentence for each source that kept no example, or whose skipped (unreadable or
    unusable) records are more than `max_skipped_share` of those it holds: a wrong encoding or
    schema can empty a source while the others hide it in the totals."""
    found = []
    for label, counts in per_source.items():
        records, skipped = counts["records"], counts["skipped_records"]
        why = f"skipped: {dict(skipped_kinds[label])}" if skipped else "all dropped by the filters"
        if counts["kept"] == 0:
            found.append(f"source {label!r} kept no example of its {records} records ({why})")
        elif skipped > max_skipped_share * records:
            found.append(
                f"source {label!r} skipped {skipped} of its {records} records ({skipped / records:.0%}, over "
                f"prepare.max_skipped_share {max_skipped_share:.0%}): {dict(skipped_kinds[label])}"
            )
    return found


DROP_REASONS = ("empty", "too_long", "not_spanish", "exact_duplicate", "normalized_duplicate")


def fit_history(example: Example, max_chars: int) -> Example:
    """The example with its oldest exchanges (a user turn and its answer) left out until the
    whole conversation fits in `max_chars`, as a context window would cut it. `max_chars` is
    for the turn that is trained: its history never makes it too long."""
    history = example.history
    while history and sum(len(text) for _, text in history) + _turn_chars(example) > max_chars:
        history = history[2:]
    return replace(example, history=history) if history != example.history else example


def _turn_chars(example: Example) -> int:
    return len(example.instruction) + len(example.input) + len(example.output)


def _drop_reason(example: Example, params: PrepareParams, seen_exact: set, seen_normalized: set) -> str | None:
    """Why the example is dropped, or None; remembers kept examples for de-duplication."""
    if not example.instruction or not example.output:
        return "empty"
    if _turn_chars(example) > params.max_chars:
        return "too_long"
    text = "\n".join((example.instruction, example.input, example.output))
    if not is_spanish(text, params.spanish_threshold, params.spanish_min_evidence):
        return "not_spanish"
    exact = example.texts()
    if exact in seen_exact:
        return "exact_duplicate"
    normalized = normalize_key(*exact)
    if normalized in seen_normalized:
        return "normalized_duplicate"
    seen_exact.add(exact)
    seen_normalized.add(normalized)
    return None


def read_split(directory: Path, split: str) -> list[Record]:
    """A split written by `prepare`, with a message naming the stage to run when it is missing or empty."""
    path = Path(directory) / f"{split}.jsonl"
    if not path.is_file():
        raise MiniGPTError(f"{path} not found: run 'dvc repro prepare' first")
    rows = read_jsonl(path)
    if not rows:
        raise MiniGPTError(
            f"{path} is empty: check prepare.sources and prepare.validation_fraction, then run 'dvc repro prepare'"
        )
    return rows
