"""Metric definitions: ROUGE and BLEU on Spanish, coherence and its failure kinds, likelihood
summaries and multiple-choice items."""

from __future__ import annotations

import json
import math

import pytest

from minigpt.metrics import (
    SCORES,
    UnicodeWordTokenizer,
    bits_per_byte,
    bleu_chrf,
    check_answer,
    compared_scores,
    parse_choice_item,
    perplexity,
    relative_changes,
    repetition,
    rouge_scores,
)
from minigpt.report import headline
from tests.helpers import REPO


def test_rouge_keeps_accented_words_whole():
    assert UnicodeWordTokenizer().tokenize("Información, AÑO y pingüino.") == ["información", "año", "y", "pingüino"]
    text = "La información sobre el año del pingüino está en el árbol."
    assert rouge_scores([text], [text])[0] == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    assert rouge_scores(["la niña come"], ["la niño come"])[0]["rouge1"] == pytest.approx(2 / 3)


def test_bleu_and_chrf_use_the_international_tokenizer_and_record_their_signature():
    scores = bleu_chrf(["¿Cómo estás, niña?"], ["¿Cómo estás, niña?"])
    assert scores["bleu"] == pytest.approx(100) and scores["chrf"] == pytest.approx(100)
    assert "tok:intl" in scores["bleu_signature"] and "nc:6" in scores["chrf_signature"]
    assert bleu_chrf(["Hola mundo"], ["Adiós a todos"])["bleu"] < 5


PROMPT = "¿Por qué el cielo se ve azul durante el día?"
REFERENCE = "Porque el aire dispersa más la luz azul del Sol que la roja, y esa luz llega desde todo el cielo."
GOOD = "El cielo se ve azul porque el aire dispersa más la luz azul del Sol que la luz roja."
BAD_ANSWERS = {
    "empty": ("", True),
    "repetition_loop": ("El cielo es azul azul azul azul azul azul azul azul azul azul azul azul azul.", True),
    "truncated": ("El cielo se ve azul porque el aire dispersa más la luz azul del Sol que", False),
    "off_topic": ("Mañana compraré pan, tomates y aceite en el mercado de mi barrio.", True),
    "wrong_language": ("The sky looks blue because the air scatters the blue light of the sun.", True),
}


def test_a_good_answer_scores_high_and_has_no_errors():
    check = check_answer(GOOD, PROMPT, REFERENCE, complete=True)
    assert check.errors == [] and check.coherence > 0.8


@pytest.mark.parametrize("kind", BAD_ANSWERS)
def test_each_failure_kind_ranks_below_a_good_answer_and_is_counted(kind):
    answer, complete = BAD_ANSWERS[kind]
    check = check_answer(answer, PROMPT, REFERENCE, complete)
    assert kind in check.errors
    assert check.coherence < check_answer(GOOD, PROMPT, REFERENCE, complete=True).coherence - 0.2
    assert 0.0 <= check.coherence <= 1.0


def test_an_english_answer_is_right_when_english_is_asked_for():
    check = check_answer(
        "I am very tired of the work.",
        "Traduce al inglés: estoy muy cansado del trabajo.",
        "I am very tired of the work.",
        True,
    )
    assert check.language == "right" and check.errors == []


def test_a_short_answer_is_judged_on_topic_and_its_language_counts_as_unknown():
    check = check_answer("Paris.", "¿Cuál es la capital de Francia?", "La capital de Francia es París.", True)
    assert check.relevance == 1 and check.errors == [] and check.coherence == 1  # accents folded
    assert check.language == "unknown"  # too short to tell: not counted as right, not penalised
    wrong = check_answer("Madrid.", "¿Cuál es la capital de Francia?", "La capital de Francia es París.", True)
    assert wrong.relevance == 0 and wrong.errors == ["off_topic"]  # one wrong word is enough to judge


CAPITAL = ("¿Cuál es la capital de Indonesia?", "La capital de Indonesia es Yakarta.")
PHOTOSYNTHESIS = (
    "¿Qué es la fotosíntesis?",
    "La fotosíntesis es el proceso por el que las plantas usan la luz del sol para convertir agua y dióxido de "
    "carbono en glucosa y oxígeno.",
)


def coherence(answer: str, case: tuple[str, str]) -> float:
    return round(check_answer(answer, *case, complete=True).coherence, 3)


def test_relevance_is_an_f1_that_word_salad_and_wrong_answers_cannot_game():
    right = coherence("La capital de Indonesia es Yakarta.", CAPITAL)
    salad = coherence("Yakarta Madrid París Lima Roma Berlín Tokio Quito Lisboa Atenas", CAPITAL)
    wrong = coherence("La capital de Indonesia es Madrid.", CAPITAL)
    echo = check_answer("¿Cuál es la capital de Indonesia?", *CAPITAL, complete=True)
    assert (right, salad, wrong) == (1.0, 0.591, 0.5)  # salad: precision 1/10, F1 0.18
    assert echo.relevance == 0 and "off_topic" in echo.errors


def test_a_long_faithful_answer_is_not_punished_for_its_length():
    question, reference = PHOTOSYNTHESIS
    longer = reference + " Ocurre sobre todo en las hojas, en los cloroplastos, gracias a la clorofila."
    assert coherence(reference, PHOTOSYNTHESIS) == 1.0
    assert coherence(longer, PHOTOSYNTHESIS) > 0.85 > coherence("Es cuando las plantas comen.", PHOTOSYNTHESIS)


@pytest.mark.parametrize(
    "echo", ["### Instrucción: Respuesta", "¿Por qué el cielo se ve azul durante el día?", "cielo azul día"]
)
def test_echoing_the_question_or_the_template_is_not_relevant(echo):
    check = check_answer(echo, PROMPT, REFERENCE, complete=True)
    assert check.relevance == 0 and check.coherence <= 0.5


def test_repetition_is_the_share_of_repeated_trigrams():
    assert repetition("uno dos tres cuatro cinco") == 0
    assert repetition("a b c a b c a b c") == pytest.approx(1 - 3 / 7)


def test_perplexity_and_bits_per_byte():
    assert perplexity(math.log(50) * 10, 10) == pytest.approx(50)
    assert bits_per_byte(math.log(2) * 8, 4) == pytest.approx(2)


def test_multiple_choice_items_in_both_formats():
    kit = {
        "instruction": "¿Qué gas respiramos?",
        "input": "A. Helio\nB. Oxígeno\nC. Neón",
        "output": "La respuesta correcta es B: Oxígeno.",
    }
    item = parse_choice_item(kit)
    assert (item.question, item.options, item.answer) == ("¿Qué gas respiramos?", ["Helio", "Oxígeno", "Neón"], 1)
    plain = parse_choice_item({"question": "¿2 + 2?", "choices": ["3", "4"], "answer": 1})
    assert plain.options == ["3", "4"] and plain.answer == 1
    with pytest.raises(ValueError, match="not a multiple-choice item"):
        parse_choice_item(kit | {"output": "No lo sé."})


def test_one_table_of_compared_scores_feeds_the_headline_the_lora_comparison_and_the_report():
    metrics = {
        name: json.loads((REPO / "metrics" / f"{name}.json").read_text())
        for name in ("train", "eval", "lora", "architectures")
    }
    scores = compared_scores(metrics["eval"])
    assert list(scores) == [score.key for score in SCORES]
    assert list(headline(metrics["train"], metrics["eval"], metrics["lora"], metrics["architectures"]))[
        : len(SCORES)
    ] == list(scores)
    assert list(metrics["lora"]["domain"]["relative_change"]) == list(scores)  # written by evaluate_lora from the table
    halved = {key: value / 2 for key, value in scores.items()}
    assert set(relative_changes(scores, halved).values()) == {-0.5}
    by_key = {score.key: score for score in SCORES}
    assert by_key["perplexity"].improved(-0.5) and not by_key["coherence"].improved(-0.5)
