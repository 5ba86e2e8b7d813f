"""Cleaning rules, filters, de-duplication, categories and the language check, each counted."""

from __future__ import annotations

import unicodedata
from collections import Counter

import pytest

from minigpt.data import CategoryRules, clean_example, clean_text, normalize_key, prepare
from minigpt.language import function_word_counts, is_spanish
from minigpt.sources import Example
from tests.helpers import example, spanish_examples


def cleaned(text: str) -> tuple[str, Counter]:
    changes: Counter = Counter()
    return clean_text(text, changes), changes


def test_text_is_normalised_to_nfc():
    text, changes = cleaned("nin\u0303o y cafe\u0301")
    assert text == "niño y café" and changes == {"unicode_nfc": 1}


def test_control_and_invisible_characters_are_removed_but_emoji_joiners_kept():
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    text, changes = cleaned(f"\ufeffHola\x00 mun\u200bdo\x07 {family}")
    assert text == f"Hola mundo {family}" and changes == {"control_characters": 1}


def test_whitespace_is_normalised_without_breaking_code_indentation():
    text, changes = cleaned("\n\n  def f(x):\r\n      return x\u00a0+ 1   \r\n\n\n\n# fin\u2028otra línea  \n")
    assert text == "  def f(x):\n      return x + 1\n\n# fin\notra línea"
    assert changes == {"whitespace": 1}
    assert cleaned("   una línea con espacios   ")[0] == "una línea con espacios"


def test_clean_text_leaves_clean_text_alone():
    text = "¿Qué es la energía? Es la capacidad de realizar un trabajo.\n\n- Cinética\n- Potencial"
    assert cleaned(text) == (text, Counter())


def test_an_example_counts_once_per_rule_however_many_fields_changed():
    changes: Counter = Counter()
    result = clean_example(Example(" Hola ", " a ", " b ", "s", " ciencia "), changes)
    assert result == Example("Hola", "a", "b", "s", "ciencia")
    assert changes == {"whitespace": 1}


def test_normalised_key_ignores_case_accents_punctuation_and_spacing():
    assert normalize_key("¿Qué  es la ENERGÍA?") == normalize_key("que es la energia") == "que es la energia"
    assert normalize_key("«Niño», dijo…") == normalize_key("nino dijo") == "nino dijo"


@pytest.mark.parametrize(
    "first, second",
    [
        ("¿Cuánto es 2 + 2?", "¿Cuánto es 2 × 2?"),
        ("print(3 + 3)", "print(3 * 2)"),
        ("'a' < 'b'", "'a' <= 'b'"),
        ("15 °C", "-15 °C"),
        ("3.5", "35"),
    ],
)
def test_normalised_key_keeps_what_changes_the_meaning(first, second):
    assert normalize_key(first) != normalize_key(second)


def test_line_break_controls_become_line_breaks_and_nfc_comes_last():
    assert cleaned("a\x85b\x0bc\x0cd")[0] == "a\nb\nc\nd"
    text, changes = cleaned("cafe\u00ad\u0301 con leche")  # a soft hyphen between letter and accent
    assert text == "café con leche" and unicodedata.is_normalized("NFC", text)
    assert changes == {"control_characters": 1, "unicode_nfc": 1}


def test_language_check_accepts_spanish_rejects_english_and_skips_short_texts():
    spanish = "La fotosíntesis es el proceso por el que las plantas transforman la luz en energía."
    english = "Photosynthesis is the process by which plants turn the light of the sun into energy."
    assert function_word_counts(spanish)[1] == 0 < function_word_counts(spanish)[0]
    assert function_word_counts(english)[0] == 0 < function_word_counts(english)[1]
    assert is_spanish(spanish, 0.3, 4)
    assert not is_spanish(english, 0.3, 4)
    assert is_spanish("¿Cuánto es 3 + 4?\n7", 0.3, 4)  # no evidence either way: kept
    assert function_word_counts("12 + 4") == (0, 0)


def test_prepare_drops_and_counts_each_kind_of_bad_example(write_jsonl, prepare_params):
    good = spanish_examples(5)
    rows = good + [
        example("Explica algo.", ""),  # empty output
        example("", "Una respuesta sin pregunta."),  # empty instruction
        example("Explica el concepto largo.", "muy " * 400),  # over max_chars
        example("Explain what the sun is and why it is hot.", "The sun is a star that is made of hot gas."),
        good[0],  # exact duplicate
        example(good[1]["instruction"].upper(), good[1]["output"].replace(".", " !")),  # normalised duplicate
    ]
    params = prepare_params([{"kind": "jsonl", "path": str(write_jsonl("raw.jsonl", rows))}], max_chars=1000)
    stats = prepare(params).stats
    assert stats["dropped"] == {
        "empty": 2,
        "too_long": 1,
        "not_spanish": 1,
        "exact_duplicate": 1,
        "normalized_duplicate": 1,
    }
    assert stats["examples"]["read"] == 11 and stats["examples"]["kept"] == 5


def test_prepare_counts_cleaning_changes(write_jsonl, prepare_params):
    rows = [
        example("  ¿Qué es el agua?  ", "Es un líquido\u00a0transparente."),
        example("¿Qué es el ca\u0301lcio?", "Es un elemento químico."),
    ]
    params = prepare_params([{"kind": "jsonl", "path": str(write_jsonl("raw.jsonl", rows))}])
    assert prepare(params).stats["cleaning"] == {"control_characters": 0, "whitespace": 1, "unicode_nfc": 1}


RULES = {
    "programación": ["python", "program*", "código"],
    "ciencia": ["átomo", "químic*"],
    "matemáticas": ["resta", "media"],
    "traducción": ["traduce"],
}


def test_categories_come_from_known_source_labels_then_keywords_then_the_default():
    rules = CategoryRules(RULES, default="general")
    label = rules.assign
    assert label(Example("Cuenta un chiste.", "", "x", "s", category="ciencia")) == ("ciencia", "source")
    assert label(Example("Escribe un PROGRAMA que sume.", "", "x", "s")) == ("programación", "rules")
    assert label(Example("¿Qué es un atomo?", "", "x", "s")) == ("ciencia", "rules")  # accent-insensitive
    assert label(Example("Explica esto.", "print('hola')  # código", "x", "s")) == ("programación", "rules")
    assert label(Example("Cuenta un chiste.", "", "x", "s", category="humor")) == ("general", "default")
    assert label(Example("Lee el reprograma.", "", "x", "s")) == ("general", "default")  # start of a word only
    assert label(Example("Elige un restaurante a medianoche.", "", "x", "s")) == ("general", "default")  # whole words
    assert label(Example("Resta 3 a 5.", "", "x", "s")) == ("matemáticas", "rules")
    assert label(Example("Un ácido QUÍMICAMENTE puro.", "", "x", "s")) == ("ciencia", "rules")  # prefix with *


def test_rule_order_decides_between_matching_categories():
    rules = CategoryRules(RULES, default="general")
    assert rules.assign(Example("Traduce este código de Python.", "", "x", "s"))[0] == "programación"


def test_prepare_reports_categories_per_split_and_their_origin(write_jsonl, prepare_params):
    rows = [example(f"Escribe un programa en Python número {i}.", "print(1)") for i in range(6)]
    rows += [example(f"Cuenta la historia número {i}.", "Había una vez.", category="ciencia") for i in range(4)]
    params = prepare_params([{"kind": "jsonl", "path": str(write_jsonl("raw.jsonl", rows))}])
    stats = prepare(params).stats
    assert stats["category_origin"] == {"source": 4, "rules": 6, "default": 0}
    assert sum(stats["categories"]["programación"].values()) == 6
    assert sum(stats["categories"]["ciencia"].values()) == 4
