"""The bundled default data: big enough, Spanish, varied, reproducible from its generator."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter

import pytest

from minigpt.data import prepare
from tests.helpers import REPO

sys.path.insert(0, str(REPO / "tools"))
import build_default_data as generator  # noqa: E402


@pytest.fixture(scope="module")
def prepared(repo_params):
    return prepare(repo_params.prepare)


def test_generated_file_is_up_to_date_with_its_generator():
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "build_default_data.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_no_multiple_choice_question_is_a_training_instruction():
    """The in-domain items ask about facts the data teaches, never in a training question's words."""
    from minigpt.files import read_jsonl
    from minigpt.language import strip_accents

    def normalised(text: str) -> str:
        return " ".join(re.findall(r"\w+", strip_accents(text.casefold())))

    taught = {
        normalised(row["instruction"]) for path in (REPO / "data" / "raw").glob("*.jsonl") for row in read_jsonl(path)
    }
    items = read_jsonl(REPO / "data" / "eval" / "opcion_multiple.jsonl")
    assert len(items) == 120 and not [
        item["instruction"] for item in items if normalised(item["instruction"]) in taught
    ]


def test_default_data_is_big_clean_and_covers_the_seed_domains(prepared):
    stats = prepared.stats
    assert stats["examples"]["kept"] >= 1500
    assert sum(stats["dropped"].values()) == 0 and not stats["skipped_records"]
    categories = set(stats["categories"])
    assert {"ciencia", "programación", "matemáticas", "historia", "lengua", "vida cotidiana"} <= categories
    assert all(sum(counts.values()) >= 100 for counts in stats["categories"].values())
    assert all(counts["validation"] > 0 for counts in stats["categories"].values())


def test_default_data_is_written_in_spanish_with_its_characters(prepared):
    text = "".join(row["instruction"] + row["output"] for rows in prepared.splits.values() for row in rows)
    characters = Counter(text)
    assert all(characters[char] > 10 for char in "áéíóúñ¿¡«»")
    with_input = sum(bool(row["input"]) for rows in prepared.splits.values() for row in rows)
    assert with_input >= 200  # tasks that need an input have one


@pytest.mark.parametrize(
    "number, words",
    [
        (0, "cero"),
        (16, "dieciséis"),
        (21, "veintiuno"),
        (22, "veintidós"),
        (31, "treinta y uno"),
        (100, "cien"),
        (101, "ciento uno"),
        (555, "quinientos cincuenta y cinco"),
        (1000, "mil"),
        (2021, "dos mil veintiuno"),
        (9999, "nueve mil novecientos noventa y nueve"),
    ],
)
def test_numbers_in_words(number, words):
    assert generator.number_to_words(number) == words


def test_conjugations_and_roman_numerals():
    assert generator.conjugate("cantar", "presente de indicativo") == [
        "canto",
        "cantas",
        "canta",
        "cantamos",
        "cantáis",
        "cantan",
    ]
    assert generator.conjugate("vivir", "pretérito perfecto simple")[2] == "vivió"
    assert generator.conjugate("comer", "futuro simple")[4] == "comeréis"
    assert [generator.to_roman(n) for n in (4, 9, 14, 1984, 2026)] == ["IV", "IX", "XIV", "MCMLXXXIV", "MMXXVI"]


def test_code_answers_are_what_python_prints():
    rows = [
        row for row in generator.generate() if row["instruction"].startswith(("¿Qué imprime", "¿Cuál es la salida"))
    ]
    assert len(rows) >= 100
    for row in rows[:50]:
        assert row["output"] == "Imprime:\n" + generator.run_python(row["input"])
