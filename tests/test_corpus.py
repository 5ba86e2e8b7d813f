"""Reading plain-text corpora: every file kind as a stream of documents, light filters, bad
records counted and skipped, bad files named, the validation split by a hash of the text, and
the tokenizer's sample of the corpus."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from minigpt.config import CorpusParams
from minigpt.corpus import CorpusReader, CorpusSample, normalize, validation_share
from minigpt.errors import MiniGPTError
from tests.helpers import spanish_documents, write_documents


def corpus(*sources: dict, **params) -> CorpusParams:
    return CorpusParams.model_validate({"sources": list(sources), **params})


def texts(reader: CorpusReader) -> list[str]:
    return [record.text for record in reader.records() if record.text is not None]


def test_a_text_file_is_documents_between_blank_lines(tmp_path):
    path = tmp_path / "textos.txt"
    path.write_bytes(
        "\ufeffPrimer documento.\r\nSigue aquí.\r\n\r\n  \nSegundo: cafe\u0301.\n\n\n\nTercero, al final".encode()
    )
    assert texts(CorpusReader(corpus({"path": str(path)}))) == [
        "Primer documento.\nSigue aquí.",  # no BOM, \n line ends
        "Segundo: café.",  # NFC: the same text always tokenizes the same
        "Tercero, al final",
    ]
    assert normalize(" a\r\nb ") == "a\nb"


def test_jsonl_and_parquet_records_give_their_text_column(tmp_path):
    rows = [{"texto": f"Documento {i} en español.", "otro": i} for i in range(3)]
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    parquet = tmp_path / "b.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    params = corpus({"path": str(jsonl), "text_column": "texto"}, {"path": str(parquet), "text_column": "texto"})
    assert texts(CorpusReader(params)) == [row["texto"] for row in rows] * 2


def test_bad_records_are_counted_and_skipped_never_fatal(tmp_path):
    jsonl = tmp_path / "mixto.jsonl"
    jsonl.write_bytes(
        b'{"text": "Un documento bueno."}\n'
        b"{not json\n"
        b'{"text": 42}\n'
        b'{"text": null}\n'
        b'["text"]\n'
        b'{"text": "\\ud800 sin pareja"}\n'
        b'{"text": "A\xf1o en latin-1"}\n'
        b'{"text": "   "}\n'
        b'{"text": "Corto"}\n'
        b"\n"
    )
    txt = write_documents(tmp_path / "textos.txt", ["Bien escrito.", "Otro bien escrito."])
    txt.write_bytes(txt.read_bytes() + "\n\nAño\n".encode("latin-1"))
    records = list(CorpusReader(corpus({"path": str(jsonl)}, {"path": str(txt)}, min_chars=6)).records())
    assert [record.text for record in records if record.text] == [
        "Un documento bueno.",
        "Bien escrito.",
        "Otro bien escrito.",
    ]
    assert [record.skipped for record in records if not record.text] == [
        "malformed JSON",
        "not text",
        "not text",
        "not text",
        "invalid UTF-8",
        "invalid UTF-8",
        "empty",
        "too short",
        "invalid UTF-8",
    ]
    assert [record.number for record in records if record.source == 0] == list(range(1, 10))  # blank lines are none


def test_a_language_score_filters_where_a_source_has_one(tmp_path):
    path = tmp_path / "web.parquet"
    pq.write_table(pa.table({"text": ["Hola a todos.", "Mixed texto here."], "language_score": [0.98, 0.41]}), path)
    records = list(CorpusReader(corpus({"path": str(path)}, min_language_score=0.7)).records())
    assert [(record.text, record.skipped) for record in records] == [
        ("Hola a todos.", None),
        (None, "low language score"),
    ]


def test_files_that_cannot_be_read_stop_the_run_naming_them(tmp_path):
    broken = tmp_path / "roto.parquet"
    broken.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(MiniGPTError, match=f"{broken}: not a readable Parquet file"):
        list(CorpusReader(corpus({"path": str(broken)})).records())
    other = tmp_path / "otro.parquet"
    pq.write_table(pa.table({"contenido": ["Hola."]}), other)
    with pytest.raises(MiniGPTError, match=r"no column 'text' \(columns: contenido\); set text_column"):
        list(CorpusReader(corpus({"path": str(other)})).records())
    empty = tmp_path / "vacio.txt"
    empty.write_text("")
    with pytest.raises(MiniGPTError, match="file is empty"):
        list(CorpusReader(corpus({"path": str(empty)})).records())
    with pytest.raises(MiniGPTError, match="unsupported corpus file"):
        CorpusReader(corpus({"path": str(tmp_path / "roto.parquet")}, {"path": str(_touch(tmp_path / "a.csv"))}))
    with pytest.raises(MiniGPTError, match="no file matches"):
        CorpusReader(corpus({"path": str(tmp_path / "*.md")}))


def _touch(path):
    path.write_text("a,b\n")
    return path


def test_the_validation_split_follows_the_text_wherever_it_comes_from(tmp_path):
    documents = spanish_documents(2000)
    first = write_documents(tmp_path / "uno.txt", documents)
    second = write_documents(tmp_path / "dos.txt", list(reversed(documents)))
    records = list(CorpusReader(corpus({"path": str(first)}, {"path": str(second)}, validation_fraction=0.1)).records())
    held_out = {record.text for record in records if record.validation}
    assert {record.text for record in records if record.source == 1 and record.validation} == held_out
    assert 0.07 < len(held_out) / len(documents) < 0.13
    assert all((validation_share(text) < 0.1) == (text in held_out) for text in documents)


def test_reading_resumes_after_the_records_consumed_and_stops_where_told(tmp_path):
    first = write_documents(tmp_path / "uno.txt", spanish_documents(5))
    second = write_documents(tmp_path / "dos.txt", spanish_documents(5, start=100))
    params = corpus({"path": str(first)}, {"path": str(second)})
    resumed = CorpusReader(params, consumed={0: 3})
    assert [(record.source, record.number) for record in resumed.records()][:3] == [(0, 4), (0, 5), (1, 1)]
    assert texts(CorpusReader(params, consumed={1: 4}, finished=[0])) == spanish_documents(1, start=104)
    reader = CorpusReader(params)
    taken = []
    for record in reader.records():
        taken.append((record.source, record.number))
        if record.number == 2:
            reader.finish(record.source)  # a budget reached: the rest of the source is not read
    assert taken == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert reader.bytes_total == first.stat().st_size + second.stat().st_size


def test_the_tokenizer_sample_takes_every_source_in_turn_and_keeps_held_out_text_apart(tmp_path):
    first = write_documents(tmp_path / "uno.txt", spanish_documents(400))
    second = write_documents(tmp_path / "dos.txt", spanish_documents(400, start=1000))
    sample = CorpusSample(corpus({"path": str(first)}, {"path": str(second)}, validation_fraction=0.2), chars=8000)
    taken = list(sample)
    assert 8000 <= sum(map(len, taken)) < 8000 + max(map(len, taken))
    assert any(text.startswith("Documento 1") for text in taken[1::2])  # the second source, in turn
    assert sample.held_out and not set(sample.held_out) & set(taken)
    assert all(validation_share(text) < 0.2 for text in sample.held_out)
    assert sample.summary()["documents"] == len(taken)
    assert list(CorpusSample(corpus(), chars=8000)) == []  # no corpus: nothing to learn from
