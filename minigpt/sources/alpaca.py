"""kind `alpaca`: one record per example with `instruction`, optional `input` and `output`
(the Alpaca format, as most Spanish instruction sets on the hub ship)."""

from __future__ import annotations

from typing import Any

from minigpt.sources.base import Example, InstructionReader, require_object, text_field


class AlpacaReader(InstructionReader):
    kind = "alpaca"

    def convert(self, record: Any) -> Example:
        record = require_object(record)
        return Example(
            instruction=text_field(record, "instruction", required=True),
            input=text_field(record, "input", required=False),
            output=text_field(record, "output", required=True),
            source=self.source.label,
        )
