"""kind `oasst`: OpenAssistant conversation trees (oasst1, oasst2), one record per message,
linked by `parent_id`. Examples come from whole trees, so records are checked one by one and
the conversations built from all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from minigpt.sources.base import Example, InstructionReader, require_object, text_field
from minigpt.sources.formats import RecordError


class OasstReader(InstructionReader):
    kind = "oasst"

    def convert(self, record: Any) -> Message:
        return message(record)

    def examples(self, converted: list[Message]) -> Iterator[Example]:
        return conversations(converted, self.source.label, self.source.replies)


@dataclass(frozen=True)
class Message:
    message_id: str
    parent_id: str | None
    role: str
    text: str
    lang: str
    rank: float | None
    usable: bool


def message(record: Any) -> Message:
    record = require_object(record)
    for key in ("message_id", "role", "text", "lang"):
        text_field(record, key, required=True)
    parent_id = record.get("parent_id")
    if parent_id is not None and not isinstance(parent_id, str):
        raise RecordError("wrong type", f"field 'parent_id' should be a string or null, got {type(parent_id).__name__}")
    rank = record.get("rank")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, (int, float))):
        raise RecordError("wrong type", f"field 'rank' should be a number or null, got {type(rank).__name__}")
    if rank is not None and rank != rank:  # NaN, as Parquet/pandas write a missing rank
        rank = None
    return Message(
        message_id=record["message_id"],
        parent_id=parent_id,
        role=record["role"],
        text=record["text"],
        lang=record["lang"],
        rank=rank,
        usable=not record.get("deleted", False) and record.get("review_result", True) is not False,
    )


def conversations(messages: list[Message], source: str, replies: str) -> Iterator[Example]:
    """Assistant turns of the Spanish conversations, each with the turns before it as history.

    `replies: best`: from each Spanish root prompt, the branch follows turn after turn the best
    usable Spanish reply (rank 0 is best, unranked replies come after ranked ones, then source
    order) and the best follow-up prompt, until a turn has none: one example per turn.
    `replies: all`: every usable Spanish assistant reply under a usable Spanish path from the
    root, several per prompt where the tree has them. Either way, a message that is deleted,
    failed review or is not in Spanish is left out with everything under it.
    """
    children: dict[str, list[Message]] = {}
    for message in messages:
        if message.parent_id and message.usable and message.lang == "es":
            children.setdefault(message.parent_id, []).append(message)

    def ranked(parent: Message, role: str) -> list[Message]:
        candidates = [child for child in children.get(parent.message_id, []) if child.role == role]
        return sorted(candidates, key=lambda reply: (reply.rank is None, reply.rank or 0))  # stable: source order

    def followed(parent: Message, role: str) -> list[Message]:
        found = ranked(parent, role)
        return found if replies == "all" else found[:1]

    visited: set[str] = set()  # (repeated ids must not loop)

    def turns(prompt: Message, history: tuple[tuple[str, str], ...]) -> Iterator[Example]:
        if prompt.message_id in visited:
            return
        visited.add(prompt.message_id)
        for reply in followed(prompt, "assistant"):
            yield Example(instruction=prompt.text, input="", output=reply.text, source=source, history=history)
            for follow_up in followed(reply, "prompter"):
                yield from turns(follow_up, (*history, ("user", prompt.text), ("assistant", reply.text)))

    for root in messages:
        if root.role == "prompter" and root.parent_id is None and root.usable and root.lang == "es":
            yield from turns(root, ())
