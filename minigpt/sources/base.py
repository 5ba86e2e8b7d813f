"""What every instruction reader shares: the `Example` it produces, the reading loop and the
checks of one record's fields.

A reader of a new kind subclasses `InstructionReader`, names its `kind`, writes `convert` (one
record, checked) and, where records only make examples together, `examples`; then it is added
to the registry in `minigpt/sources/__init__.py` and to the schema's `Source.kind`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from minigpt.config import Source
from minigpt.sources.formats import ErrorPolicy, Record, RecordError, hub_records, read_records


@dataclass(frozen=True)
class Example:
    instruction: str
    input: str
    output: str
    source: str
    category: str = ""
    # Earlier turns of a conversation, oldest first: ("user" | "assistant", text). The example is
    # the answer to `instruction` after them, as the chat renders a history.
    history: tuple[tuple[str, str], ...] = ()

    def thread_start(self) -> Example:
        """The conversation's first turn (the example itself when it has no history)."""
        if not self.history:
            return self
        return Example(instruction=self.history[0][1], input="", output=self.history[1][1], source=self.source)

    def texts(self) -> tuple[str, ...]:
        """Every text of the example, history first."""
        return (*(text for _, text in self.history), self.instruction, self.input, self.output)


class InstructionReader:
    """The examples of one instruction source, read from its files or its hub dataset."""

    kind: ClassVar[str]

    def __init__(self, source: Source):
        self.source = source

    def convert(self, record: Any) -> Any:
        """One record, checked: an `Example`, or what `examples` builds them from. Raises
        `RecordError` for a record that cannot be used."""
        raise NotImplementedError

    def examples(self, converted: list[Any]) -> Iterable[Example]:
        """The source's examples from its converted records: one each, unless a kind links
        records together (a conversation tree)."""
        return converted

    def read(self, policy: ErrorPolicy) -> tuple[list[Example], int]:
        """All usable examples, in source order, and the number of records read (those
        skipped as unreadable included)."""
        source = self.source
        records = hub_records(source) if source.hub else read_records(source.path, policy)
        skipped_before = sum(policy.skipped.values())
        converted, parsed, unconverted = [], 0, 0
        for location, record in records:
            parsed += 1
            try:
                converted.append(self.convert(record))
            except RecordError as error:
                policy.handle(location, error)
                unconverted += 1
        unreadable = sum(policy.skipped.values()) - skipped_before - unconverted  # skipped by the file reader
        return list(self.examples(converted)), parsed + unreadable


def text_field(record: Record, key: str, required: bool) -> str:
    value = record.get(key)
    if value is None:
        if required:
            raise RecordError("missing field", repr(key)) if key not in record else RecordError("null field", repr(key))
        return ""
    if not isinstance(value, str):
        raise RecordError("wrong type", f"field {key!r} should be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a JSON escape such as "\ud800": no character, and unwritable
        raise RecordError("invalid UTF-8", f"field {key!r} contains a lone surrogate") from None
    return value


def require_object(record: Any) -> Record:
    if not isinstance(record, dict):
        raise RecordError("wrong type", f"expected a JSON object, got {type(record).__name__}")
    return record
