"""Token shards: a tokenized corpus on disk, written once by the `corpus` stage and read by
`pretrain` through memory maps (`minigpt.packing.ShardWindows`), never copied into memory.

`data/shards/` holds, per split (`train`, `validation`), files `<split>-00000.bin`, … of raw
token ids (uint16 while the vocabulary fits, else uint32; no header), each document followed
by `<|endoftext|>`, so document boundaries are recoverable; and `index.json`, which says what
the files hold: dtype, tokens and documents per shard and split, each shard's SHA-256, the
sources (with the commits of hub datasets) and the SHA-256 of the tokenizer that wrote them.

A shard closes at the first document end past `corpus.shard_tokens`, and the validation shard
also whenever a training shard closes (the points a killed run resumes from). The splits read
as one stream each: training windows may run from one shard into the next, so results do not
depend on where shards close.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from minigpt.errors import MiniGPTError

INDEX = "index.json"
SPLITS = ("train", "validation")
FORMAT = 1
SCAN_TOKENS = 1 << 24  # tokens read at once when shards are checked: 32 MB of uint16


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


class ShardWriter:
    """Appends documents' tokens to one split's shards in `directory`.

    A shard is written to a temporary file and renamed once closed, so a shard file that
    exists is complete; `shards` lists the closed ones (their index entries)."""

    def __init__(self, directory: Path, split: str, dtype: np.dtype, shard_tokens: int, shards: list[dict]):
        self.directory, self.split, self.dtype, self.shard_tokens = directory, split, dtype, shard_tokens
        self.shards = list(shards)
        self._handle = None
        self._digest = hashlib.sha256()
        self.tokens = self.documents = 0  # of the open shard

    def _name(self) -> str:
        return f"{self.split}-{len(self.shards):05d}.bin"

    def add(self, ids: np.ndarray) -> None:
        """One document's tokens, <|endoftext|> included."""
        if self._handle is None:
            self._handle = open(self.directory / (self._name() + ".tmp"), "wb")
        data = ids.astype(self.dtype, copy=False).tobytes()
        self._handle.write(data)
        self._digest.update(data)
        self.tokens += len(ids)
        self.documents += 1

    @property
    def full(self) -> bool:
        return self.tokens >= self.shard_tokens

    def close(self) -> None:
        """Close the open shard, if it holds anything."""
        if self._handle is None:
            return
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        name = self._name()
        os.replace(self.directory / (name + ".tmp"), self.directory / name)
        self.shards.append(
            {"file": name, "tokens": self.tokens, "documents": self.documents, "sha256": self._digest.hexdigest()}
        )
        self._handle, self._digest, self.tokens, self.documents = None, hashlib.sha256(), 0, 0


def split_summary(shards: list[dict]) -> dict[str, Any]:
    return {
        "tokens": sum(shard["tokens"] for shard in shards),
        "documents": sum(shard["documents"] for shard in shards),
        "shards": shards,
    }


# --------------------------------------------------------------------------- reading


def read_index(directory: Path) -> dict[str, Any]:
    """The index of the shards in `directory`, with a message naming the stage to run when it
    is missing or damaged."""
    path = Path(directory) / INDEX
    if not path.is_file():
        raise MiniGPTError(f"{path} not found: run 'dvc repro corpus' first")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise MiniGPTError(f"{path} is damaged ({error}): rerun 'dvc repro corpus'") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise MiniGPTError(f"{path} is not an index of this version's shards: rerun 'dvc repro corpus'")
    return index


def check_tokenizer(index: dict[str, Any], tokenizer_dir: Path, directory: Path) -> None:
    """Shards are token ids of one tokenizer: those of another are refused, never reused."""
    found = file_sha256(Path(tokenizer_dir) / "tokenizer.json")
    if index["tokenizer_sha256"] != found:
        raise MiniGPTError(
            f"{directory} was written by another tokenizer (SHA-256 {index['tokenizer_sha256'][:12]}…, "
            f"{tokenizer_dir} is {found[:12]}…): rerun 'dvc repro corpus'"
        )


def scan_shards(directory: Path, shards: list[dict], dtype: np.dtype, eos: int | None = None) -> np.ndarray | None:
    """Check that every shard of a split is there, whole and unchanged (size and SHA-256), so
    damage stops the run here, before training. Each shard is read once; with `eos`, that read
    also finds where documents end: their positions in the split's stream."""
    ends, start = [], 0
    for shard in shards:
        path = Path(directory) / shard["file"]
        if not path.is_file():
            raise MiniGPTError(f"{path} is missing: rerun 'dvc repro corpus' (or 'dvc pull' it)")
        digest = hashlib.sha256()
        if path.stat().st_size == shard["tokens"] * dtype.itemsize:
            tokens = np.memmap(path, dtype=dtype, mode="r") if shard["tokens"] else np.empty(0, dtype)
            for offset in range(0, len(tokens), SCAN_TOKENS):
                chunk = tokens[offset : offset + SCAN_TOKENS]
                digest.update(memoryview(chunk))
                if eos is not None:
                    ends.append(np.flatnonzero(chunk == eos) + start + offset)
        if digest.hexdigest() != shard["sha256"]:
            raise MiniGPTError(
                f"{path} is damaged (its size or SHA-256 is not the one {INDEX} records): "
                "rerun 'dvc repro corpus' (or 'dvc pull' it)"
            )
        start += shard["tokens"]
    if eos is None:
        return None
    return np.concatenate(ends) if ends else np.empty(0, dtype=np.int64)
