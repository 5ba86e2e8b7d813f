"""Source readers, one per `kind`, looked up by kind.

Instruction sources (`prepare.sources`) are read into `Example`s by an `InstructionReader`;
pretraining corpus sources (`corpus.sources`) into raw documents by a `TextReader`. Each kind
the params schema allows has its reader here (a test holds the two together); cleaning,
filtering and splitting what they read stay with the stage that uses it (`minigpt/data.py`,
`minigpt/corpus.py`).
"""

from __future__ import annotations

from minigpt.config import CorpusSource, Source
from minigpt.sources.alpaca import AlpacaReader
from minigpt.sources.base import Example, InstructionReader
from minigpt.sources.formats import ErrorPolicy
from minigpt.sources.jsonl import JsonlReader
from minigpt.sources.oasst import OasstReader
from minigpt.sources.text import TextReader

READERS: dict[str, type[InstructionReader] | type[TextReader]] = {
    reader.kind: reader for reader in (AlpacaReader, JsonlReader, OasstReader, TextReader)
}


def reader_for(source: Source | CorpusSource) -> InstructionReader | TextReader:
    """The reader of a source's kind, bound to the source."""
    return READERS[source.kind](source)


def read_source(source: Source, policy: ErrorPolicy) -> tuple[list[Example], int]:
    """All usable examples of one instruction source, in source order, and the number of
    records read (those skipped as unreadable included)."""
    return reader_for(source).read(policy)
