"""kind `jsonl`: the project's own format, the Alpaca fields plus optional `source` and
`category` labels per record (what `prepare` writes, and the bundled handwritten examples)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from minigpt.sources.alpaca import AlpacaReader
from minigpt.sources.base import Example, text_field


class JsonlReader(AlpacaReader):
    kind = "jsonl"

    def convert(self, record: Any) -> Example:
        example = super().convert(record)
        return replace(
            example,
            source=text_field(record, "source", required=False) or example.source,
            category=text_field(record, "category", required=False),
        )
