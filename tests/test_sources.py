"""The source registry: every kind the params schema allows has its reader, and nothing else."""

from __future__ import annotations

import typing

import pytest

from minigpt.config import CorpusSource, Source
from minigpt.sources import READERS, InstructionReader, reader_for
from minigpt.sources.text import TextReader


def schema_kinds(model) -> set[str]:
    return set(typing.get_args(model.model_fields["kind"].annotation))


def test_the_registry_has_a_reader_for_every_kind_the_schema_allows_and_no_other():
    instruction_kinds, corpus_kinds = schema_kinds(Source), schema_kinds(CorpusSource)
    assert instruction_kinds and corpus_kinds and not instruction_kinds & corpus_kinds
    assert set(READERS) == instruction_kinds | corpus_kinds
    assert all(issubclass(READERS[kind], InstructionReader) for kind in instruction_kinds)
    assert all(issubclass(READERS[kind], TextReader) for kind in corpus_kinds)


@pytest.mark.parametrize("kind", sorted(schema_kinds(Source)))
def test_an_instruction_source_is_read_by_the_reader_of_its_kind(kind, tmp_path):
    reader = reader_for(Source(kind=kind, path=str(tmp_path / "x.jsonl")))
    assert reader.kind == kind and reader.source.kind == kind


def test_a_corpus_source_is_read_by_the_text_reader_which_resumes_and_counts_bytes(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("Un documento.\n\nOtro más.\n", encoding="utf-8")
    reader = reader_for(CorpusSource(path=str(path)))
    assert isinstance(reader, TextReader)
    assert [text for text, _ in reader.values()] == ["Un documento.\n", "Otro más.\n"]
    assert reader.bytes_done == reader.bytes_total == path.stat().st_size
    assert [text for text, _ in reader_for(CorpusSource(path=str(path))).values(skip=1)] == ["Otro más.\n"]


def test_a_corpus_source_of_an_instruction_kind_is_refused_by_the_schema():
    with pytest.raises(ValueError, match="kind"):
        CorpusSource(kind="alpaca", path="x.jsonl")
