"""Source readers: alpaca (JSON, JSONL, Parquet, hub), oasst trees, the project's JSONL, bad input."""

from __future__ import annotations

import json
import re
import sys

import pytest

from minigpt.config import Source
from minigpt.errors import MiniGPTError
from minigpt.sources import ErrorPolicy, Example, read_source
from tests.helpers import REPO, example, spanish_examples

ALPACA = [
    {"instruction": "¿Qué es un átomo?", "input": "", "output": "La unidad más pequeña de un elemento."},
    {
        "instruction": "Resume el texto.",
        "input": "El sol sale por el este.",
        "output": "El sol sale por el este.",
        "extra": "ignored",
    },
    {"instruction": "Di hola.", "output": "Hola."},  # no input field at all
]
EXPECTED_ALPACA = [
    Example("¿Qué es un átomo?", "", "La unidad más pequeña de un elemento.", "alpaca-es"),
    Example("Resume el texto.", "El sol sale por el este.", "El sol sale por el este.", "alpaca-es"),
    Example("Di hola.", "", "Hola.", "alpaca-es"),
]


def read(kind: str, path, on_error: str = "fail", **source) -> tuple[list[Example], ErrorPolicy]:
    policy = ErrorPolicy(on_error)
    examples, _ = read_source(Source(kind=kind, path=str(path), **source), policy)
    return examples, policy


@pytest.mark.parametrize("suffix", ["jsonl", "json", "parquet"])
def test_alpaca_reads_every_file_format_the_same(tmp_path, suffix):
    path = tmp_path / f"alpaca.{suffix}"
    if suffix == "jsonl":
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in ALPACA), encoding="utf-8")
    elif suffix == "json":
        path.write_text(json.dumps(ALPACA, ensure_ascii=False), encoding="utf-8")
    else:
        import pyarrow
        import pyarrow.parquet

        rows = [row | {"input": row.get("input", "")} for row in ALPACA]
        pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    examples, _ = read("alpaca", path, name="alpaca-es")
    assert examples == EXPECTED_ALPACA


def test_project_jsonl_keeps_its_category_and_source(write_jsonl):
    path = write_jsonl(
        "kit.jsonl",
        [
            example("Traduce: hola.", "Hello.", category="traducción", source="tatoeba"),
            example("¿Qué es el agua?", "Un líquido."),
        ],
    )
    examples, _ = read("jsonl", path)
    assert examples[0].category == "traducción" and examples[0].source == "tatoeba"
    assert examples[1].category == "" and examples[1].source == str(path)


def test_globs_read_every_matching_file_in_order(write_jsonl, tmp_path):
    write_jsonl("part-2.jsonl", [example("Segunda pregunta.", "Dos.")])
    write_jsonl("part-1.jsonl", [example("Primera pregunta.", "Uno.")])
    examples, _ = read("jsonl", tmp_path / "part-*.jsonl")
    assert [e.output for e in examples] == ["Uno.", "Dos."]


def oasst_message(message_id, parent_id, role, text, lang="es", rank=None, deleted=False, review_result=True):
    return {
        "message_id": message_id,
        "parent_id": parent_id,
        "role": role,
        "text": text,
        "lang": lang,
        "rank": rank,
        "deleted": deleted,
        "review_result": review_result,
    }


def oasst_thread() -> list[dict]:
    return [
        oasst_message("p1", None, "prompter", "¿Qué es la fotosíntesis?"),
        oasst_message("a1", "p1", "assistant", "Respuesta de rango 1.", rank=1),
        oasst_message("a2", "p1", "assistant", "Respuesta de rango 0.", rank=0),
        oasst_message("a3", "p1", "assistant", "Respuesta sin rango."),
        oasst_message("p2", "a2", "prompter", "¿Y en las algas?", rank=1),
        oasst_message("p2b", "a2", "prompter", "¿Y en los hongos?", rank=0),  # the best follow-up
        oasst_message("a4", "p2", "assistant", "También."),
        oasst_message("a4b", "p2b", "assistant", "No: los hongos no hacen fotosíntesis."),
        oasst_message("p3b", "a4b", "prompter", "¿Por qué?"),
        oasst_message("a5b", "p3b", "assistant", "No tienen clorofila.", deleted=True),  # the branch ends here
        oasst_message("a9", "a1", "prompter", "Rama de una respuesta peor."),
        oasst_message("a10", "a9", "assistant", "No debe aparecer: no es la mejor rama."),
        oasst_message("p3", None, "prompter", "What is water?", lang="en"),
        oasst_message("a5", "p3", "assistant", "A liquid.", lang="en"),
        oasst_message("p4", None, "prompter", "¿Mensaje borrado?", deleted=True),
        oasst_message("a6", "p4", "assistant", "No debe aparecer."),
        oasst_message("p5", None, "prompter", "¿Cuál es la capital de Chile?"),
        oasst_message("a7", "p5", "assistant", "Respuesta rechazada.", rank=0, review_result=False),
        oasst_message("a8", "p5", "assistant", "Santiago de Chile.", rank=1),
        oasst_message("p6", None, "prompter", "¿Sin respuesta?"),
    ]


def test_oasst_keeps_every_assistant_turn_of_the_best_ranked_branch(write_jsonl):
    examples, _ = read("oasst", write_jsonl("oasst.jsonl", oasst_thread()), name="oasst")
    opener = (("user", "¿Qué es la fotosíntesis?"), ("assistant", "Respuesta de rango 0."))
    assert [(e.instruction, e.output, e.history) for e in examples] == [
        ("¿Qué es la fotosíntesis?", "Respuesta de rango 0.", ()),
        ("¿Y en los hongos?", "No: los hongos no hacen fotosíntesis.", opener),
        ("¿Cuál es la capital de Chile?", "Santiago de Chile.", ()),
    ]


def test_a_conversation_keeps_its_turns_in_one_split_and_its_history_in_the_rows(write_jsonl, prepare_params):
    from minigpt.data import prepare

    path = write_jsonl("oasst.jsonl", oasst_thread())
    result = prepare(prepare_params([{"kind": "oasst", "path": str(path)}], validation_fraction=0.5, split_by="group"))
    rows = {row["instruction"]: (split, row) for split, kept in result.splits.items() for row in kept}
    assert rows["¿Y en los hongos?"][0] == rows["¿Qué es la fotosíntesis?"][0]
    assert rows["¿Y en los hongos?"][1]["history"] == [
        {"role": "user", "content": "¿Qué es la fotosíntesis?"},
        {"role": "assistant", "content": "Respuesta de rango 0."},
    ]
    assert "history" not in rows["¿Cuál es la capital de Chile?"][1]  # single turns keep the plain schema
    counts = result.stats["sources"][str(path)]
    assert (counts["examples"], counts["kept"], counts["kept_follow_ups"]) == (3, 3, 1)


def test_repeated_message_ids_do_not_loop(write_jsonl):
    looping = [
        oasst_message("p1", None, "prompter", "¿Hola?"),
        oasst_message("a1", "p1", "assistant", "Hola."),
        oasst_message("p1", "a1", "prompter", "¿Otra vez?"),  # the id of its own ancestor
    ]
    examples, _ = read("oasst", write_jsonl("oasst.jsonl", looping))
    assert len(examples) <= 3


def test_oasst_treats_a_nan_rank_as_unranked(write_jsonl):
    path = write_jsonl(
        "oasst.jsonl",
        [
            oasst_message("p1", None, "prompter", "¿Hola?"),
            '{"message_id": "a1", "parent_id": "p1", "role": "assistant", "text": "Sin rango.", "lang": "es", '
            '"rank": NaN}',
            oasst_message("a2", "p1", "assistant", "Con rango.", rank=3),
        ],
    )
    examples, _ = read("oasst", path)
    assert examples[0].output == "Con rango."


BAD_LINES = [
    ('{"instruction": "Hola", "output": ', "malformed JSON"),
    ('{"instruction": "Hola", "output": 5}', "wrong type: field 'output' should be a string, got int"),
    ('{"instruction": "Hola"}', "missing field: 'output'"),
    ('["Hola", "Adiós"]', "wrong type: expected a JSON object, got list"),
]


@pytest.mark.parametrize("line, message", BAD_LINES)
def test_a_bad_record_stops_the_run_naming_file_and_line(write_jsonl, line, message):
    path = write_jsonl("bad.jsonl", [example("Primera.", "Uno."), "", line])
    with pytest.raises(MiniGPTError) as caught:
        read("alpaca", path)
    assert f"{path}:3: {message}" in str(caught.value)


def test_prepare_says_how_to_skip_bad_records(write_jsonl, prepare_params):
    from minigpt.data import prepare

    path = write_jsonl("bad.jsonl", [example("Primera.", "Uno."), '{"instruction": "Hola"}'])
    with pytest.raises(MiniGPTError, match=r"bad.jsonl:2: missing field: 'output' \(set prepare.on_error: skip"):
        prepare(prepare_params([{"kind": "jsonl", "path": str(path)}]))


def test_skip_mode_counts_bad_records_and_keeps_the_rest(write_jsonl):
    path = write_jsonl(
        "bad.jsonl", [example("Primera.", "Uno."), *[line for line, _ in BAD_LINES], example("Última.", "Dos.")]
    )
    examples, policy = read("alpaca", path, on_error="skip")
    assert [e.output for e in examples] == ["Uno.", "Dos."]
    assert policy.skipped == {"malformed JSON": 1, "wrong type": 2, "missing field": 1}


def test_non_utf8_bytes_are_reported_or_skipped(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(
        json.dumps(example("Primera.", "Uno.")).encode()
        + b"\n"
        + '{"instruction": "¿Qué año?", "output": "Año 2000."}\n'.encode("latin-1")
    )
    with pytest.raises(MiniGPTError, match=rf"{path}:2: invalid UTF-8"):
        read("alpaca", path)
    examples, policy = read("alpaca", path, on_error="skip")
    assert len(examples) == 1 and policy.skipped == {"invalid UTF-8": 1}


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_whole_file_problems_always_stop_the_run(tmp_path, on_error):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(MiniGPTError, match="file is empty"):
        read("alpaca", empty, on_error=on_error)
    broken = tmp_path / "broken.json"
    broken.write_text('[\n  {"instruction": "a",\n  "output": }\n]', encoding="utf-8")
    with pytest.raises(MiniGPTError, match=rf"{broken}:3: malformed JSON"):
        read("alpaca", broken, on_error=on_error)
    not_a_list = tmp_path / "object.json"
    not_a_list.write_text('{"instruction": "a", "output": "b"}', encoding="utf-8")
    with pytest.raises(MiniGPTError, match="expected a JSON array"):
        read("alpaca", not_a_list, on_error=on_error)
    with pytest.raises(MiniGPTError, match="no file matches"):
        read("alpaca", tmp_path / "missing-*.jsonl", on_error=on_error)
    with pytest.raises(MiniGPTError, match="file not found"):
        read("alpaca", tmp_path / "missing.jsonl", on_error=on_error)
    fake_parquet = tmp_path / "fake.parquet"
    fake_parquet.write_text("not parquet", encoding="utf-8")
    with pytest.raises(MiniGPTError, match="not a readable Parquet file"):
        read("alpaca", fake_parquet, on_error=on_error)


def test_an_unreachable_hub_dataset_says_which_source_and_how_to_use_a_local_file(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the real `datasets` code path, failing fast
    source = Source(kind="alpaca", hub="bertin-project/alpaca-spanish", revision="main", name="alpaca-es")
    with pytest.raises(MiniGPTError) as caught:
        read_source(source, ErrorPolicy("fail"))
    message = str(caught.value)
    assert "source 'alpaca-es'" in message and "bertin-project/alpaca-spanish" in message
    assert "'path:'" in message and "data/raw/" in message


def test_hub_rows_go_through_the_same_converter(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, config, split, revision, streaming):
        calls.append((name, config, split, revision, streaming))
        return ALPACA

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    source = Source(kind="alpaca", hub="org/alpaca-es", revision="abc123", name="alpaca-es")
    assert read_source(source, ErrorPolicy("fail")) == (EXPECTED_ALPACA, 3)
    assert calls == [("org/alpaca-es", None, "train", "abc123", False)]  # instructions: downloaded whole


def test_a_leading_byte_order_mark_is_not_data(tmp_path):
    rows = [example("Primera.", "Uno."), example("Segunda.", "Dos.")]
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(row) + "\n" for row in rows).encode())
    as_array = tmp_path / "bom.json"
    as_array.write_bytes(b"\xef\xbb\xbf" + json.dumps(rows).encode())
    for path in (jsonl, as_array):
        examples, _ = read("alpaca", path)
        assert [e.output for e in examples] == ["Uno.", "Dos."]


@pytest.mark.parametrize("line", ['{"instruction": "a", "output": ' + "1" * 5000 + "}", "[" * 100_000 + "]" * 100_000])
def test_pathological_json_is_malformed_json_not_a_crash(write_jsonl, line):
    path = write_jsonl("odd.jsonl", [line])
    with pytest.raises(MiniGPTError, match=rf"{path}:1: malformed JSON"):
        read("alpaca", path)


def test_lone_surrogates_are_invalid_utf8_records(write_jsonl):
    path = write_jsonl("surrogate.jsonl", ['{"instruction": "hola \\ud800", "output": "x"}', example("Bien.", "Sí.")])
    with pytest.raises(MiniGPTError, match=rf"{path}:1: invalid UTF-8: field 'instruction' contains a lone surrogate"):
        read("alpaca", path)
    examples, policy = read("alpaca", path, on_error="skip")
    assert len(examples) == 1 and policy.skipped == {"invalid UTF-8": 1}


def test_a_jsonl_file_of_blank_lines_is_empty(write_jsonl):
    path = write_jsonl("blank.jsonl", ["", "   ", ""])
    with pytest.raises(MiniGPTError, match="file is empty"):
        read("alpaca", path)


def test_oasst_counts_records_read_apart_from_examples_built(write_jsonl):
    path = write_jsonl(
        "oasst.jsonl",
        [
            oasst_message("p1", None, "prompter", "¿Hola?"),
            oasst_message("a1", "p1", "assistant", "Hola."),
            oasst_message("a2", "p1", "assistant", "Buenas.", rank=1),
        ],
    )
    policy = ErrorPolicy("fail")
    examples, records = read_source(Source(kind="oasst", path=str(path)), policy)
    assert (len(examples), records) == (1, 3)


def _mutations(seed: int, count: int) -> list[bytes]:
    """Records broken in the ways real files break: cut short, wrong types, stray bytes,
    huge or deeply nested values, other encodings, binary noise."""
    import random

    rng = random.Random(seed)
    good = json.dumps(example("¿Qué es la luz?", "La luz es una onda electromagnética."), ensure_ascii=False)
    makers = [
        lambda: good.encode()[: rng.randrange(1, len(good.encode()))],
        lambda: json.dumps({"instruction": rng.choice([None, 3, [], {}, True]), "output": "x"}).encode(),
        lambda: json.dumps({"instruction": "a", "output": "b" * rng.randrange(10**5, 10**6)}).encode(),
        lambda: ("[" * rng.randrange(1, 50_000)).encode(),
        lambda: good.encode("latin-1", errors="replace").replace(b"?", b"\xe9"),
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))).replace(b"\n", b" "),
        lambda: json.dumps(rng.choice([1, "texto", None, [good]])).encode(),
        lambda: good.encode(),
    ]
    return [rng.choice(makers)() for _ in range(count)]


@pytest.mark.parametrize("kind", ["alpaca", "jsonl"])
def test_fuzzed_files_give_counted_skips_or_a_named_line_never_a_crash(tmp_path, kind):
    lines = _mutations(seed=7, count=300)
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    examples, policy = read(kind, path, on_error="skip")
    assert len(examples) + sum(policy.skipped.values()) == sum(1 for line in lines if line.strip())
    assert len(examples) >= 1 and sum(policy.skipped.values()) >= 100
    with pytest.raises(MiniGPTError, match=rf"{path}:\d+: "):
        read(kind, path)


def test_a_file_of_one_example_repeated_is_refused_by_the_stage_as_duplicates(write_jsonl, tmp_path, default_params):
    import yaml

    from tests.helpers import run_command

    path = write_jsonl("same.jsonl", [example("¿Qué es la luz?", "La luz es una onda que vemos.")] * 50)
    default_params["prepare"]["sources"] = [{"kind": "jsonl", "path": str(path)}]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(default_params, allow_unicode=True), encoding="utf-8")
    refused = run_command(
        [sys.executable, "-m", "stages.prepare"], tmp_path, check=False, env={"PYTHONPATH": str(REPO)}
    )
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "(1 train, 0 validation): 49 examples were dropped as duplicates" in refused.stderr
    assert not (tmp_path / "data" / "processed").exists()  # nothing written for the next stage to trip on


def test_a_null_field_is_not_called_missing(write_jsonl):
    path = write_jsonl("nulls.jsonl", [example("Primera.", "Uno."), {"instruction": "Hola", "output": None}])
    with pytest.raises(MiniGPTError, match=r"nulls.jsonl:2: null field: 'output'"):
        read("alpaca", path)
    assert read("alpaca", path, on_error="skip")[1].skipped == {"null field": 1}


def test_a_source_that_loses_too_many_records_is_named(write_jsonl, prepare_params):
    from minigpt.data import prepare

    def source(name: str, good: int, bad: int) -> dict:
        rows = spanish_examples(good, prefix=f"Describe ({name})") + ['{"instruction": "Hola"}'] * bad
        return {"kind": "jsonl", "path": str(write_jsonl(f"{name}.jsonl", rows)), "name": name}

    params = prepare_params([source("sana", 19, 1), source("rota", 8, 2)], on_error="skip", validation_fraction=0.3)
    result = prepare(params)
    assert result.warnings == [
        "source 'rota' skipped 2 of its 10 records (20%, over prepare.max_skipped_share 10%): {'missing field': 2}"
    ]
    assert result.stats["sources"]["rota"] | {"kept": 8} == result.stats["sources"]["rota"]
    assert prepare(params.model_copy(update={"max_skipped_share": 0.25})).warnings == []
    with pytest.raises(MiniGPTError, match=r"source 'rota' skipped 2 of its 10 .*on_source_loss: warn"):
        prepare(params.model_copy(update={"on_source_loss": "fail"}))


def test_a_source_that_vanishes_is_named_on_the_console_and_can_stop_prepare(tmp_path, default_params):
    """A UTF-16 file under on_error: skip reads as malformed records only: no example survives."""
    import yaml

    from tests.helpers import run_command

    good, lost = tmp_path / "buena.jsonl", tmp_path / "utf16.jsonl"
    good.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in spanish_examples(30)), "utf-8")
    lost.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in spanish_examples(3)), "utf-16")
    section = default_params["prepare"] | {
        "sources": [{"kind": "jsonl", "path": str(good)}, {"kind": "jsonl", "path": str(lost)}],
        "on_error": "skip",
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(default_params | {"prepare": section}), "utf-8")
    stage = [sys.executable, str(REPO / "stages" / "prepare.py")]
    warned = run_command(stage, tmp_path)
    assert re.search(
        rf"warning: source '{re.escape(str(lost))}' kept no example of its \d+ records \(skipped: ", warned.stderr
    )
    assert "30 read, 30 kept" in warned.stdout
    section["on_source_loss"] = "fail"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(default_params | {"prepare": section}), "utf-8")
    failed = run_command(stage, tmp_path, check=False)
    assert failed.returncode == 1 and f"error: source '{lost}' kept no example" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_replies_is_an_oasst_setting():
    assert Source(kind="oasst", path="x.jsonl", replies="all").replies == "all"
    assert Source(kind="alpaca", path="x.jsonl").replies == "best"
    with pytest.raises(ValueError, match="'replies' applies to oasst sources, not to kind 'alpaca'"):
        Source(kind="alpaca", path="x.jsonl", replies="all")


def test_a_long_history_is_cut_from_its_oldest_exchange_to_fit():
    from minigpt.data import fit_history

    history = (("user", "a" * 40), ("assistant", "b" * 40), ("user", "c" * 10), ("assistant", "d" * 10))
    turn = Example(instruction="e" * 10, input="", output="f" * 10, source="s", history=history)
    assert fit_history(turn, 200) is turn  # it fits whole
    assert fit_history(turn, 60).history == history[2:]  # the last exchange fits, the first does not
    assert fit_history(turn, 25).history == ()  # the turn alone; max_chars then judges it
