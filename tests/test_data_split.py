"""The train/validation split: stable, leak-free, deterministic, and written atomically."""

from __future__ import annotations

import re

import pytest

from minigpt.data import normalize_key, prepare
from minigpt.files import atomic_file
from minigpt.files import write_jsonl as write_rows
from tests.helpers import example, spanish_examples


def split_of(result) -> dict[str, str]:
    return {row["id"]: split for split, rows in result.splits.items() for row in rows}


def test_adding_a_source_never_moves_existing_examples(write_jsonl, prepare_params):
    first = {"kind": "jsonl", "path": str(write_jsonl("a.jsonl", spanish_examples(300)))}
    second = {"kind": "jsonl", "path": str(write_jsonl("b.jsonl", spanish_examples(300, prefix="Describe")))}
    alone = split_of(prepare(prepare_params([first], validation_fraction=0.2)))
    together = split_of(prepare(prepare_params([second, first], validation_fraction=0.2)))
    assert all(together[key] == split for key, split in alone.items())
    assert len(together) == 600


def test_validation_fraction_is_respected(write_jsonl, prepare_params):
    source = {"kind": "jsonl", "path": str(write_jsonl("a.jsonl", spanish_examples(2000)))}
    stats = prepare(prepare_params([source], validation_fraction=0.2)).stats["examples"]
    assert 0.17 < stats["validation"] / stats["kept"] < 0.23


def test_the_seed_changes_the_split(write_jsonl, prepare_params):
    source = {"kind": "jsonl", "path": str(write_jsonl("a.jsonl", spanish_examples(200)))}
    assert split_of(prepare(prepare_params([source], split_seed=0))) != split_of(
        prepare(prepare_params([source], split_seed=1))
    )


def shared_instruction_rows() -> list[dict]:
    """Many inputs per instruction wording, and the same prompts with different answers."""
    wordings = ["Traduce al español la siguiente frase.", "¿Cómo se dice esto en español?", "Traduce esta frase."]
    rows = [example(wordings[i % 3], f"Sentence number {i}.", input=f"The {i} cats are here.") for i in range(300)]
    rows += [example("¿Qué es la luz?", f"La luz es energía, versión {i}.") for i in range(20)]
    rows += [example("¿QUÉ es la luz", f"Es una onda, versión {i}.") for i in range(20)]
    return rows


@pytest.mark.parametrize("split_by", ["prompt", "instruction", "group"])
def test_no_prompt_or_instruction_appears_in_both_splits(write_jsonl, prepare_params, split_by):
    source = {"kind": "jsonl", "path": str(write_jsonl("a.jsonl", shared_instruction_rows()))}
    result = prepare(prepare_params([source], split_by=split_by, validation_fraction=0.3))

    def keys(rows, *fields):
        return {normalize_key(*(row[field] for field in fields)) for row in rows}

    fields = ("instruction",) if split_by == "instruction" else ("instruction", "input")
    assert not keys(result.splits["train"], *fields) & keys(result.splits["validation"], *fields)
    assert not keys(result.splits["train"], "instruction", "input") & keys(
        result.splits["validation"], "instruction", "input"
    )
    assert result.splits["train"] and result.splits["validation"]


def test_prompt_split_spreads_one_instruction_wording_over_both_splits(write_jsonl, prepare_params):
    source = {"kind": "jsonl", "path": str(write_jsonl("a.jsonl", shared_instruction_rows()))}
    result = prepare(prepare_params([source], split_by="prompt", validation_fraction=0.3))
    wording = "Traduce esta frase."
    assert all(any(row["instruction"] == wording for row in result.splits[split]) for split in ("train", "validation"))


def test_pair_split_keeps_a_translation_and_its_reverse_together(write_jsonl, prepare_params):
    forward = [
        example("Traduce al inglés la siguiente frase.", f"The {i} cats are here.", input=f"Los {i} gatos están aquí.")
        for i in range(200)
    ]
    reverse = [example("Traduce al español la siguiente frase.", row["input"], input=row["output"]) for row in forward]
    source = {"kind": "jsonl", "path": str(write_jsonl("pairs.jsonl", forward + reverse))}

    def leaks(split_by: str) -> int:
        splits = prepare(prepare_params([source], split_by=split_by, validation_fraction=0.3)).splits
        train = {(normalize_key(row["input"]), normalize_key(row["output"])) for row in splits["train"]}
        return sum((normalize_key(row["output"]), normalize_key(row["input"])) in train for row in splits["validation"])

    assert leaks("prompt") > 20  # the reverse of most validation pairs is trained on
    assert leaks("pair") == leaks("group") == 0


def test_group_split_links_prompts_and_pairs_in_either_order(write_jsonl, prepare_params):
    """A chain: a pair, its reverse under another wording, and that wording's prompt with another
    answer are one group; across groups, one instruction wording still spreads over both splits."""
    rows = []
    for i in range(150):
        spanish, english = f"Los {i} gatos están aquí.", f"The {i} cats are here."
        rows += [
            example("Traduce al inglés la siguiente frase.", english, input=spanish),
            example("Pasa al español esta frase.", spanish, input=english),
            example("Pasa al español esta frase.", f"Aquí hay {i} gatos.", input=english),  # same prompt
            example(f"Di cuántos gatos hay: {i}.", f"Hay {i} gatos."),
            example(f"DI CUÁNTOS gatos hay: {i}", f"Son {i} gatos."),  # the same prompt, normalised
        ]
    source = {"kind": "jsonl", "path": str(write_jsonl("chains.jsonl", rows))}
    splits = prepare(prepare_params([source], split_by="group", validation_fraction=0.3)).splits
    split_of_row = {row["output"]: split for split, kept in splits.items() for row in kept}
    for i in range(150):
        translations = {split_of_row[f"The {i} cats are here."], split_of_row[f"Los {i} gatos están aquí."]}
        assert translations == {split_of_row[f"Aquí hay {i} gatos."]}
        assert split_of_row[f"Hay {i} gatos."] == split_of_row[f"Son {i} gatos."]
    for wording in ("Traduce al inglés la siguiente frase.", "Pasa al español esta frase."):
        assert all(any(row["instruction"] == wording for row in splits[split]) for split in ("train", "validation"))
    assert 0.2 < len(splits["validation"]) / len(rows) < 0.4


def test_prepare_is_deterministic_to_the_byte(write_jsonl, prepare_params, tmp_path):
    source = {"kind": "jsonl", "path": str(write_jsonl("a.jsonl", shared_instruction_rows()))}
    outputs = []
    for attempt in range(2):
        path = tmp_path / f"train-{attempt}.jsonl"
        write_rows(path, prepare(prepare_params([source])).splits["train"])
        outputs.append(path.read_bytes())
    assert outputs[0] == outputs[1]


def test_rows_carry_a_stable_id_and_all_fields(write_jsonl, prepare_params):
    source = {"kind": "jsonl", "path": str(write_jsonl("a.jsonl", spanish_examples(20)))}
    rows = [row for rows in prepare(prepare_params([source])).splits.values() for row in rows]
    assert all(set(row) == {"id", "instruction", "input", "output", "source", "category"} for row in rows)
    assert len({row["id"] for row in rows}) == 20 and all(len(row["id"]) == 16 for row in rows)


def rows_then_failure():
    yield {"a": 2}
    raise RuntimeError("interrupted")


def test_a_failed_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        with atomic_file(target) as handle:
            handle.write("half a line")
            raise RuntimeError("interrupted")
    assert not target.exists() and list(tmp_path.iterdir()) == []

    write_rows(target, [{"a": 1}])
    with pytest.raises(RuntimeError):
        write_rows(target, rows_then_failure())
    assert target.read_text() == '{"a": 1}\n'  # the previous complete file is untouched
    assert [path.name for path in tmp_path.iterdir()] == ["out.jsonl"]


def chained_rows(links: int) -> list[dict]:
    """Examples each linked to the next: a translation and its reverse, then the reverse's
    prompt asked again with another answer, and so on: one group for `split_by: group`."""
    words = [f"palabra número {index} de la cadena" for index in range(links + 1)]
    rows = []
    for here, there in zip(words, words[1:]):
        rows.append(example("Traduce esta frase al otro idioma.", there, input=here))
        rows.append(example("Traduce esta frase al otro idioma.", here, input=there))
    return rows


@pytest.mark.parametrize(
    "rows, cause",
    [
        (chained_rows(400), "the largest group of examples that must share a split (split_by: group) holds 800 of"),
        ([example("¿Cuál es la capital de España?", f"Madrid, dicho de la forma {i}.") for i in range(300)], "300 of"),
        ([example("¿Cuál es la capital de España?", "Madrid.")] * 500, "499 examples were dropped as duplicates"),
    ],
)
def test_a_split_left_empty_is_named_with_why(write_jsonl, prepare_params, rows, cause):
    source = {"kind": "jsonl", "path": str(write_jsonl("a.jsonl", rows))}
    for seed in range(4):
        problem = prepare(prepare_params([source], split_seed=seed, spanish_threshold=0)).split_problem
        assert re.match("the split leaves (train|validation) empty", problem)
        assert cause in problem and "prepare.split_by" in problem


def test_the_chain_splits_once_examples_are_grouped_by_prompt(write_jsonl, prepare_params):
    source = {"kind": "jsonl", "path": str(write_jsonl("a.jsonl", chained_rows(400)))}
    prepared = prepare(prepare_params([source], split_by="prompt", spanish_threshold=0))
    stats = prepared.stats["examples"]
    assert stats["train"] and stats["validation"] and stats["kept"] == 800 and prepared.split_problem is None
