"""Token sequences and the rows they are packed into: one module for training, evaluation and
the encoder-vs-decoder study.

Every sequence (an instruction example, or a chunk of a document) ends with `<|endoftext|>`.
Each token carries a flag saying whether it is a training target (response tokens, or every
token when the prompt loss is on); padding never is. Three layouts put sequences into rows of
`block_size + 1` tokens:

- `masked` (the default): best-fit decreasing packing, so little is padding, and each row
  records which sequence every token belongs to. The model then gives each sequence its own
  positions from 0 and a block-diagonal causal mask: a sequence sees only itself, exactly as
  it would alone, as at inference.
- `open`: the same rows without that record, so each row is one causal sequence: a sequence
  attends to the unrelated ones before it and its positions start wherever it landed.
- `padded`: one sequence per row, then padding (the batches we assume the reference had): alone by
  construction, and most of a row is padding.

Pretraining reads `ShardWindows` instead: rows that tile a corpus's token shards (see
`minigpt.shards`), read through memory maps as they are needed, never packed in memory.
Both give the training loop the same three things: row indices, target counts and batches.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from minigpt import template
from minigpt.config import PACKING_LAYOUTS, PackingLayout
from minigpt.errors import MiniGPTError
from minigpt.model import IGNORE_INDEX
from minigpt.shards import scan_shards

TokenSequence = tuple[list[int], list[bool]]  # token ids, and whether each is a training target


def encode_instructions(rows: Sequence[dict], tokenizer, train_on_prompt: bool) -> list[TokenSequence]:
    """Token ids of each example: its prompt (after its history of earlier turns, if any),
    then its answer and <|endoftext|>.

    Prompt and answer are tokenized separately, exactly as at generation time, where the
    prompt is tokenized alone and the model continues it. Only the answer is a target unless
    `train_on_prompt`: a conversation's earlier turns are context, each trained as its own example.
    """
    prompts = tokenizer([template.render_row_prompt(row) for row in rows], add_special_tokens=False)["input_ids"]
    answers = tokenizer([row["output"] for row in rows], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return [
        (prompt + answer + [eos], [train_on_prompt] * len(prompt) + [True] * (len(answer) + 1))
        for prompt, answer in zip(prompts, answers)
    ]


def encode_documents(texts: Sequence[str], tokenizer, row_length: int) -> list[TokenSequence]:
    """Plain text for pretraining: each document + <|endoftext|>, cut into row-sized chunks."""
    eos = tokenizer.eos_token_id
    sequences = []
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        ids = ids + [eos]
        for start in range(0, len(ids), row_length):
            chunk = ids[start : start + row_length]
            if len(chunk) > 1:
                sequences.append((chunk, [True] * len(chunk)))
    return sequences


@dataclass
class PackedRows:
    tokens: torch.Tensor  # [rows, row_length] token ids
    targets: torch.Tensor  # [rows, row_length] bool: the token is predicted with loss
    stats: dict[str, Any]
    # [rows, row_length] int16, layout `masked` only: 1, 2, … for the row's first, second, …
    # sequence, 0 for padding. None: each row is one causal sequence.
    documents: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.tokens.numpy().tobytes())
        digest.update(self.targets.numpy().tobytes())
        if self.documents is not None:
            digest.update(self.documents.numpy().tobytes())
        return digest.hexdigest()

    def to(self, device: torch.device) -> PackedRows:
        move = lambda tensor: None if tensor is None else tensor.to(device)  # noqa: E731
        return PackedRows(move(self.tokens), move(self.targets), self.stats, move(self.documents))

    @property
    def index_device(self) -> torch.device:
        """Where row indices must be: where the rows are, so that a step makes no copy."""
        return self.tokens.device

    @cached_property
    def _row_targets(self) -> torch.Tensor:
        return self.targets[:, 1:].sum(dim=1)

    def count_targets(self, indices: torch.Tensor) -> torch.Tensor:
        """The target tokens of the given rows: a 0-dim tensor on the rows' device."""
        return self._row_targets[indices].sum()

    def batch(self, indices: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor | None]:
        """The model's arguments for the given rows, on `device`: inputs, labels (targets, or
        IGNORE_INDEX) and, for document-masked rows, the inputs' document numbers."""
        tokens, targets = self.tokens[indices], self.targets[indices]
        batch = {
            "idx": tokens[:, :-1],
            "targets": torch.where(targets[:, 1:], tokens[:, 1:], IGNORE_INDEX),
            "documents": None if self.documents is None else self.documents[indices, :-1],
        }
        return {name: None if tensor is None else tensor.to(device) for name, tensor in batch.items()}


def pack(
    sequences: Sequence[TokenSequence], row_length: int, pad_id: int, layout: PackingLayout = "open"
) -> PackedRows:
    """Rows of sequences in one of the PACKING_LAYOUTS (see the module's docstring). `masked` and `open`
    pack best-fit decreasing: each sequence goes into the fullest row it still fits in.

    A sequence longer than a row is cut to the row (counted as truncated) if some target
    survives the cut, and dropped otherwise (counted as dropped). Under `masked`, a sequence's
    first token is never a target: nothing of its own document comes before it to predict it.
    """
    if layout not in PACKING_LAYOUTS:
        raise MiniGPTError(f"unknown packing layout {layout!r}: use one of {', '.join(PACKING_LAYOUTS)}")
    kept: list[TokenSequence] = []
    truncated = dropped = 0
    for ids, targets in sequences:
        if len(ids) > row_length:
            ids, targets = ids[:row_length], targets[:row_length]
            if not any(targets[1:]):
                dropped += 1
                continue
            truncated += 1
        if layout == "masked":
            targets = [False, *targets[1:]]
        kept.append((ids, targets))
    if not kept:
        raise MiniGPTError("no sequence fits in a row: raise model.block_size or check the data")
    rows = [[index] for index in range(len(kept))] if layout == "padded" else best_fit(kept, row_length)

    tokens, flags, documents = fill_rows(kept, rows, row_length, pad_id)
    used = sum(len(ids) for ids, _ in kept)
    stats = {
        "layout": layout,
        "sequences": len(kept),
        "truncated": truncated,
        "dropped_too_long": dropped,
        "rows": len(rows),
        "padding_fraction": round(1 - used / tokens.numel(), 4),
        "target_tokens": int(flags[:, 1:].sum()),
    }
    return PackedRows(tokens, flags, stats, documents if layout == "masked" else None)


def best_fit(sequences: Sequence[TokenSequence], row_length: int) -> list[list[int]]:
    """Indices of the sequences in each row, by best-fit decreasing (longest first, each into
    the fullest row it still fits in; ties in input order)."""
    order = sorted(range(len(sequences)), key=lambda index: (-len(sequences[index][0]), index))
    rows: list[list[int]] = []  # indices of the sequences in each row
    space: list[tuple[int, int]] = []  # (free tokens, row number), sorted
    for index in order:
        length = len(sequences[index][0])
        slot = bisect.bisect_left(space, (length, -1))
        if slot < len(space):
            free, row = space.pop(slot)
        else:
            free, row = row_length, len(rows)
            rows.append([])
        rows[row].append(index)
        if free - length > 0:
            bisect.insort(space, (free - length, row))
    return rows


def fill_rows(
    sequences: Sequence[TokenSequence], rows: Sequence[Sequence[int]], row_length: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids, target flags and document numbers (PackedRows.documents), [rows, row_length]:
    row r holds sequences[i] for i in rows[r], one after another, then padding. One scatter of
    all tokens, not one copy per sequence."""
    if row_length > torch.iinfo(torch.int16).max:
        raise MiniGPTError(f"rows of {row_length} tokens are longer than packing supports (32767)")
    order, starts, ranks = [], [], []
    for row, members in enumerate(rows):
        cursor = row * row_length
        for rank, index in enumerate(members, start=1):
            order.append(index)
            starts.append(cursor)
            ranks.append(rank)
            cursor += len(sequences[index][0])
    lengths = torch.tensor([len(sequences[index][0]) for index in order], dtype=torch.long)
    total = int(lengths.sum())
    ids = torch.from_numpy(
        np.fromiter(itertools.chain.from_iterable(sequences[index][0] for index in order), dtype=np.int64, count=total)
    )
    targets = torch.from_numpy(
        np.fromiter(itertools.chain.from_iterable(sequences[index][1] for index in order), dtype=np.bool_, count=total)
    )
    offsets = torch.arange(len(ids)) - torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
    positions = torch.repeat_interleave(torch.tensor(starts, dtype=torch.long), lengths) + offsets
    tokens = torch.full((len(rows) * row_length,), pad_id, dtype=torch.long)
    flags = torch.zeros(len(rows) * row_length, dtype=torch.bool)
    documents = torch.zeros(len(rows) * row_length, dtype=torch.int16)
    tokens[positions], flags[positions] = ids, targets
    documents[positions] = torch.repeat_interleave(torch.tensor(ranks, dtype=torch.int16), lengths)
    shape = (len(rows), row_length)
    return tokens.view(shape), flags.view(shape), documents.view(shape)


def pack_instructions(
    rows: Sequence[dict], tokenizer, row_length: int, train_on_prompt: bool, layout: PackingLayout
) -> PackedRows:
    """A split of instruction examples, encoded and laid out in rows."""
    return pack(encode_instructions(rows, tokenizer, train_on_prompt), row_length, tokenizer.pad_token_id, layout)


class ShardWindows:
    """Training rows cut from one split's token stream, read through memory maps.

    Row i holds tokens [i × block_size, i × block_size + row_length) of the split (row_length
    = block_size + 1: a window's inputs and, shifted by one, its targets), so the rows tile
    the stream and an epoch sees every token once. With layout `masked`, a document starts
    at position 0 and attends only to itself, as in packed rows: document numbers come from
    the <|endoftext|> tokens, and the token after one is no target. With `open`, a row is one
    causal sequence across documents (nanoGPT's windows).

    Indices of rows stay on the CPU: each batch is read from the maps, pinned, and copied to
    the training device without waiting for it."""

    index_device = torch.device("cpu")

    def __init__(self, directory: Path, index: dict[str, Any], split: str, row_length: int, layout: str):
        shards = index["splits"][split]["shards"]
        dtype = np.dtype(index["dtype"])
        self.layout, self.row_length, self.stride = layout, row_length, row_length - 1
        self.eos = index["eos_token_id"]
        # Masked rows: where documents end, found while the shards are checked, so that a step's
        # targets are counted without reading its rows.
        self.ends = scan_shards(directory, shards, dtype, self.eos if layout == "masked" else None)
        self.maps = [np.memmap(Path(directory) / shard["file"], dtype=dtype, mode="r") for shard in shards]
        self.starts = np.cumsum([0] + [shard["tokens"] for shard in shards]).tolist()
        tokens = self.starts[-1]
        self.count = (tokens - 1) // self.stride if tokens else 0
        if self.count == 0:
            raise MiniGPTError(
                f"the {split} split of {directory} holds {tokens} tokens, fewer than one row of {row_length}: "
                "give the corpus more text (or raise corpus.validation_fraction for the validation split)"
            )
        self.identity = hashlib.sha256(
            json.dumps([[shard["sha256"] for shard in shards], layout, row_length]).encode()
        ).hexdigest()
        self.stats = {
            "layout": layout,
            "rows": self.count,
            "tokens": tokens,
            "documents": index["splits"][split]["documents"],
            "shards": len(shards),
        }

    def __len__(self) -> int:
        return self.count

    def fingerprint(self) -> str:
        return self.identity

    def to(self, device: torch.device) -> ShardWindows:
        return self  # batches move to the device as they are read

    def rows(self, indices: torch.Tensor) -> np.ndarray:
        """[rows, row_length] int64 token ids of the given rows."""
        out = np.empty((len(indices), self.row_length), dtype=np.int64)
        for row, index in enumerate(indices.tolist()):
            start = index * self.stride
            filled = 0
            while filled < self.row_length:  # a window may run from one shard into the next
                shard = bisect.bisect_right(self.starts, start + filled) - 1
                offset = start + filled - self.starts[shard]
                piece = self.maps[shard][offset : offset + self.row_length - filled]
                out[row, filled : filled + len(piece)] = piece
                filled += len(piece)
        return out

    def in_memory(self, indices: torch.Tensor) -> PackedRows:
        """The given rows as PackedRows, held in memory: the same training, to compare with."""
        tokens = torch.from_numpy(self.rows(indices))
        batch = self._arguments(tokens)
        targets = torch.zeros_like(tokens, dtype=torch.bool)
        targets[:, 1:] = batch["targets"] != IGNORE_INDEX
        documents = None
        if batch["documents"] is not None:  # numbered from 1, as packing does (0 is padding there)
            documents = torch.zeros_like(tokens, dtype=torch.int16)
            documents[:, :-1] = batch["documents"] + 1
        return PackedRows(tokens, targets, dict(self.stats), documents)

    def count_targets(self, indices: torch.Tensor) -> int:
        """The target tokens of the given rows, counted on the host without reading them (a
        process reads only its own rows of a step, though every process counts the whole step)."""
        targets = len(indices) * self.stride
        if self.ends is not None:  # masked: the token after a document's end is no target
            starts = indices.numpy() * self.stride
            targets -= int(
                (np.searchsorted(self.ends, starts + self.stride) - np.searchsorted(self.ends, starts)).sum()
            )
        return targets

    def batch(self, indices: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor | None]:
        """The model's arguments for the given rows, on `device`."""
        tokens = torch.from_numpy(self.rows(indices))
        if device.type == "cuda":
            tokens = tokens.pin_memory()
        return self._arguments(tokens.to(device, non_blocking=True))

    def _arguments(self, tokens: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Inputs, labels and (masked) document numbers of rows of token ids, where they are."""
        inputs, following = tokens[:, :-1], tokens[:, 1:]
        if self.layout == "open":
            return {"idx": inputs, "targets": following, "documents": None}
        ends = inputs == self.eos  # a document's last token: what follows starts the next one
        return {
            "idx": inputs,
            "targets": following.masked_fill(ends, IGNORE_INDEX),
            "documents": ends.cumsum(dim=1) - ends.long(),
        }


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [sequences, longest] and their attention mask, padded on the right (scoring,
    features) or on the left (generation, so that every answer starts in the same column)."""
    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        columns = slice(width - len(ids), width) if left else slice(0, len(ids))
        input_ids[row, columns] = torch.tensor(ids, dtype=torch.long)
        attention[row, columns] = 1
    return input_ids, attention
