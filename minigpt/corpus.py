"""Plain-text corpora for pretraining: sources read as streams of documents (by the reader of
their kind, `minigpt/sources/text.py`), light filters, and the validation split by a hash of
each document.

Every record read becomes a `Record`: a document, or the reason it was skipped. Whoever
consumes the records counts both, so the counts always describe exactly what was consumed,
even when reading stops at a budget. A file that cannot be read at all (missing, not Parquet,
without the text column) stops the run naming it; a single bad record is skipped and counted.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from minigpt import template
from minigpt.config import CorpusParams, CorpusSource
from minigpt.errors import MiniGPTError
from minigpt.files import expand_files, replace_directory, write_json
from minigpt.shards import FORMAT, INDEX, SPLITS, ShardWriter, file_sha256, split_summary, token_dtype
from minigpt.sources import reader_for
from minigpt.sources.formats import RecordError
from minigpt.sources.text import TextReader


@dataclass(frozen=True)
class Record:
    source: int  # index of its source in corpus.sources
    number: int  # 1, 2, … within its source
    text: str | None  # the document; None when skipped
    # Why it was skipped: not text, invalid UTF-8, malformed JSON, empty, too short, low language score.
    skipped: str | None = None
    validation: bool = False  # held out, by a hash of the text


def validation_share(text: str) -> float:
    """Where a document falls in [0, 1), from a hash of its text: the same document always
    falls in the same split, whatever source or position it comes from."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, person=b"minigpt-corpus").digest()
    return int.from_bytes(digest, "big") / 2**64


def normalize(text: str) -> str:
    """\\n line ends, NFC, no surrounding whitespace: the same text always tokenizes the same."""
    text = text.replace("\r\n", "\n").strip()
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


class CorpusReader:
    """The records of `corpus.sources`, each source from its start or, to resume, after the
    records already consumed (`consumed`: source index -> records); `finish` stops a source
    (its budget is reached) or the whole corpus.

    For a progress estimate it counts the bytes of local files read (`bytes_done` of
    `bytes_total`; None when a source is streamed from the hub)."""

    def __init__(
        self,
        params: CorpusParams,
        consumed: dict[int, int] | None = None,
        finished: Iterable[int] = (),
        commits: dict[int, str | None] | None = None,
    ):
        self.params = params
        self.consumed = dict(consumed or {})
        self.finished = set(finished)
        self.readers: list[TextReader] = [reader_for(source) for source in params.sources]
        for index, commit in (commits or {}).items():  # resuming: "main" may have moved since
            self.readers[index].pin(commit)
        totals = [reader.bytes_total for reader in self.readers]
        self.bytes_total = None if None in totals else sum(totals)

    @property
    def bytes_done(self) -> int:
        return sum(reader.bytes_done for reader in self.readers)

    @property
    def commits(self) -> dict[int, str | None]:
        """Hub sources opened so far: the commit each revision resolved to."""
        return {index: reader.commit for index, reader in enumerate(self.readers) if reader.pinned}

    def finish(self, source: int | None = None) -> None:
        """Read no more of `source`, or of any source when None."""
        self.finished |= set(range(len(self.params.sources))) if source is None else {source}

    def records(self) -> Iterator[Record]:
        """Every source's records, one source after another."""
        for index in range(len(self.params.sources)):
            yield from self._source_records(index)

    def interleaved(self) -> Iterator[Record]:
        """The sources' records in turn, one from each, so that a sample of the first records
        has some of every source."""
        streams = [self._source_records(index) for index in range(len(self.params.sources))]
        while streams:
            for stream in list(streams):
                record = next(stream, None)
                if record is None:
                    streams.remove(stream)
                else:
                    yield record

    def _source_records(self, index: int) -> Iterator[Record]:
        if index in self.finished:
            return
        number = self.consumed.get(index, 0)
        values = self.readers[index].values(skip=number)
        while index not in self.finished:  # checked before reading on: a finished source opens no other file
            value = next(values, None)
            if value is None:
                return
            number += 1
            yield self._record(index, number, *value)

    def _record(self, index: int, number: int, value: Any, score: Any) -> Record:
        if isinstance(value, RecordError):  # not even a value: bytes that are not UTF-8, a line that is not JSON
            return Record(index, number, None, value.kind)
        if not isinstance(value, str):
            return Record(index, number, None, "not text")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON): no character at all
            return Record(index, number, None, "invalid UTF-8")
        text = normalize(value)
        reason = None
        if not text:
            reason = "empty"
        elif len(text) < self.params.min_chars:
            reason = "too short"
        elif isinstance(score, (int, float)) and score < self.params.min_language_score:
            reason = "low language score"
        if reason:
            return Record(index, number, None, reason)
        return Record(index, number, text, validation=validation_share(text) < self.params.validation_fraction)


def source_summary(sources: Sequence[CorpusSource], commits: dict[int, str | None]) -> list[dict[str, Any]]:
    """Where each source is, as recorded beside the shards and in metrics/corpus.json."""
    found = []
    for index, source in enumerate(sources):
        entry: dict[str, Any] = {"label": source.label}
        if source.path is not None:
            entry["path"] = source.path
        else:
            entry |= {"hub": source.hub, "config": source.config, "split": source.hub_split}
            entry["commit"] = commits.get(index) or ("local folder" if source.local_hub else source.revision)
        found.append(entry)
    return found


# --------------------------------------------------------------------------- the tokenizer's sample

HELD_OUT_CHARS = 2_000_000  # at most this much held-out text measures the tokenizer (stable to ~0.1 %)


class CorpusSample:
    """Corpus text for the tokenizer to learn from: training documents from every source in
    turn, up to `chars` characters. The validation documents met on the way (up to
    HELD_OUT_CHARS) are kept in `held_out`, text the tokenizer never saw, to measure it on."""

    def __init__(self, params: CorpusParams, chars: int):
        self.params, self.chars = params, chars
        self.documents = self.taken = 0
        self.held_out: list[str] = []
        self.reader: CorpusReader | None = None  # opened on the first read

    def __iter__(self) -> Iterator[str]:
        if not self.params.sources or not self.chars:
            return
        held = 0
        self.reader = CorpusReader(self.params)
        for record in self.reader.interleaved():
            if record.text is None:
                continue
            if record.validation:
                if held < HELD_OUT_CHARS:
                    self.held_out.append(record.text)
                    held += len(record.text)
                continue
            yield record.text
            self.documents += 1
            self.taken += len(record.text)
            if self.taken >= self.chars:
                return

    def summary(self) -> dict[str, Any]:
        summary = {
            "documents": self.documents,
            "chars": self.taken,
            "held_out_documents": len(self.held_out),
            "held_out_chars": sum(map(len, self.held_out)),
        }
        if any(source.hub for source in self.params.sources):  # which commits of the hub it learned from
            summary["sources"] = source_summary(self.params.sources, self.reader.commits if self.reader else {})
        return summary


# --------------------------------------------------------------------------- tokenizing into shards

PROGRESS = "progress.json"  # in the partial directory: how far the closed shards go
BATCH_CHARS = 1 << 20  # characters tokenized at once, on every core: besides one document, all the stage holds


def _batches(records: Iterator[Record]) -> Iterator[list[Record]]:
    batch: list[Record] = []
    chars = 0
    for record in records:
        batch.append(record)
        chars += len(record.text or "")
        if chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


@dataclass
class Progress:
    """How far the closed shards of a run go: what `partial/progress.json` holds. `run`
    identifies the params and tokenizer; another run's progress is not resumed."""

    run: str
    sources: list[dict[str, Any]]  # per source: records, documents, tokens, skipped (by reason), budget_reached
    consumed: dict[int, int] = field(default_factory=dict)  # source -> records consumed
    finished: list[int] = field(default_factory=list)  # sources stopped by a budget or followed by the next
    commits: dict[int, str | None] = field(default_factory=dict)
    shards: dict[str, list[dict]] = field(default_factory=lambda: {split: [] for split in SPLITS})
    budget_reached: bool = False

    @classmethod
    def fresh(cls, run: str, sources: int) -> Progress:
        counts = {"records": 0, "documents": 0, "tokens": 0, "skipped": {}, "budget_reached": False}
        return cls(run, [dict(counts, skipped={}) for _ in range(sources)])

    @classmethod
    def load(cls, partial: Path, run: str, sources: int) -> Progress:
        """What an interrupted run of the same params and tokenizer closed in `partial`, with
        everything it left after that removed; or a fresh start in an emptied `partial`."""
        try:
            saved = json.loads((partial / PROGRESS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = None
        why = "holds shards of other params, inputs or tokenizer"
        if saved is not None and saved.get("run") == run:
            progress = cls(**saved)
            progress.consumed = {int(key): value for key, value in progress.consumed.items()}
            progress.commits = {int(key): value for key, value in progress.commits.items()}
            closed = {shard["file"] for shards in progress.shards.values() for shard in shards}
            if all((partial / name).is_file() for name in closed):
                for path in partial.iterdir():  # a shard closed after the progress was saved, a temporary file
                    if path.name not in closed | {PROGRESS}:
                        path.unlink()
                tokens = sum(count["tokens"] for count in progress.sources)
                print(f"corpus: resuming after {len(closed)} closed shards ({tokens:,} tokens) in {partial}")
                return progress
            why = "misses shards its progress lists"
        if partial.exists():
            if saved is not None:
                print(f"corpus: {partial} {why}: starting afresh")
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        return cls.fresh(run, sources)

    def save(self, partial: Path) -> None:
        write_json(partial / PROGRESS, asdict(self))


class ShardBuilder:
    """The `corpus` stage's work: read the corpus, tokenize it in batches on every core, and
    write token shards (see minigpt.shards).

    Shards are closed in `partial` first, and after each training shard closes (the
    validation shard closes beside it) the progress is saved, so a run killed at any point
    resumes after its last closed shard. The finished shards move to their directory at the
    end, all at once."""

    def __init__(self, params: CorpusParams, tokenizer_dir: Path, partial: Path):
        from tokenizers import Tokenizer

        tokenizer_file = Path(tokenizer_dir) / "tokenizer.json"
        self.params, self.partial = params, Path(partial)
        self.tokenizer_sha256 = file_sha256(tokenizer_file)
        inputs = [params.model_dump(), local_files(params.sources), self.tokenizer_sha256, FORMAT]
        run = hashlib.sha256(json.dumps(inputs).encode()).hexdigest()
        self.progress = Progress.load(self.partial, run, len(params.sources))
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.encode_special_tokens = True  # "<|endoftext|>" inside a document is text, not its end
        self.eos = self.tokenizer.token_to_id(template.EOS_TOKEN)
        self.dtype = token_dtype(self.tokenizer.get_vocab_size())
        progress = self.progress
        self.reader = CorpusReader(params, progress.consumed, progress.finished, progress.commits)
        self.writers = {
            split: ShardWriter(self.partial, split, self.dtype, params.shard_tokens, progress.shards[split])
            for split in SPLITS
        }
        self.tokens = self.resumed_at = sum(count["tokens"] for count in progress.sources)

    def run(self) -> None:
        from tqdm import tqdm

        bar = tqdm(
            total=self.params.max_tokens or None,
            initial=self.tokens,
            unit="tok",
            unit_scale=True,
            desc="corpus",
            mininterval=1,
        )
        for batch in _batches(self.reader.records()):
            texts = [record.text for record in batch if record.text is not None]
            encoded = iter(self.tokenizer.encode_batch_fast(texts, add_special_tokens=False))
            before = self.tokens
            for record in batch:
                self._take(record, next(encoded).ids if record.text is not None else None)
            bar.update(self.tokens - before)
            if not self.params.max_tokens and self.reader.bytes_total and self.reader.bytes_done:
                # No budget, local files: the total is estimated from the bytes read, for the ETA.
                bar.total = max(self.tokens, round(self.tokens * self.reader.bytes_total / self.reader.bytes_done))
        bar.close()
        for writer in self.writers.values():
            writer.close()

    def _take(self, record: Record, ids: list[int] | None) -> None:
        """Count one record and write its document, unless its source's budget was reached
        earlier in the batch (it is then not consumed)."""
        reader, count = self.reader, self.progress.sources[record.source]
        if record.source in reader.finished:
            return
        reader.finished.update(range(record.source))  # sources come one after another: the earlier ones ended
        count["records"] += 1
        reader.consumed[record.source] = record.number
        if ids is None:
            count["skipped"][record.skipped] = count["skipped"].get(record.skipped, 0) + 1
            return
        tokens = np.array(ids + [self.eos], dtype=self.dtype)
        self.writers["validation" if record.validation else "train"].add(tokens)
        count["documents"] += 1
        count["tokens"] += len(tokens)
        self.tokens += len(tokens)
        budget = self.params.sources[record.source].max_tokens
        if budget and count["tokens"] >= budget:
            count["budget_reached"] = True
            reader.finish(record.source)
        if self.params.max_tokens and self.tokens >= self.params.max_tokens:
            self.progress.budget_reached = True
            reader.finish()
        if self.writers["validation"].full:  # (it is listed in the next progress point)
            self.writers["validation"].close()
        if self.writers["train"].full:  # the validation shard closes beside it: one consistent progress point
            for writer in self.writers.values():
                writer.close()
            self._save_progress()

    def _save_progress(self) -> None:
        self.progress.consumed = self.reader.consumed
        self.progress.finished = sorted(self.reader.finished)
        self.progress.commits = self.reader.commits
        self.progress.shards = {split: writer.shards for split, writer in self.writers.items()}
        self.progress.save(self.partial)

    def finish(self, directory: Path) -> dict[str, Any]:
        """Check what was read, write the index and move the shards to `directory`; return the index."""
        params, progress = self.params, self.progress
        sources = [
            entry | count for entry, count in zip(source_summary(params.sources, self.reader.commits), progress.sources)
        ]
        splits = {split: split_summary(writer.shards) for split, writer in self.writers.items()}
        documents = sum(entry["documents"] for entry in sources)
        described = "; ".join(
            f"{entry['label']}: {entry['records']:,} records, {entry['documents']:,} documents, "
            f"skipped {entry['skipped'] or 'none'}"
            for entry in sources
        )
        if not documents:
            raise MiniGPTError(f"the corpus holds no document ({described}): check corpus.sources and its filters")
        for entry in sources:
            if not entry["documents"]:
                print(f"warning: corpus source {entry['label']!r} kept no document ({described})", file=sys.stderr)
        for split in SPLITS:
            if not splits[split]["documents"]:
                advice = "raise it, or give the corpus more documents" if split == "validation" else "lower it"
                raise MiniGPTError(
                    f"none of the {documents:,} documents fell in the {split} split "
                    f"(corpus.validation_fraction is {params.validation_fraction}): {advice}"
                )
        if params.max_tokens and not progress.budget_reached:
            print(f"corpus: corpus.max_tokens asks for {params.max_tokens:,} tokens; the sources hold {self.tokens:,}")
        for source, entry in zip(params.sources, sources):
            if source.max_tokens and not entry["budget_reached"] and not progress.budget_reached:
                print(f"corpus: {entry['label']!r} holds {entry['tokens']:,} tokens of the {source.max_tokens:,} asked")
        index = {
            "format": FORMAT,
            "enabled": True,
            "dtype": self.dtype.name,
            "vocab_size": self.tokenizer.get_vocab_size(),
            "eos_token_id": self.eos,
            "tokenizer_sha256": self.tokenizer_sha256,
            "max_tokens": params.max_tokens,
            "budget_reached": progress.budget_reached,
            "splits": splits,
            "sources": sources,
        }
        write_json(self.partial / INDEX, index)
        (self.partial / PROGRESS).unlink(missing_ok=True)
        replace_directory(self.partial, directory)
        return index


def local_files(sources: Sequence[CorpusSource]) -> list[tuple[str, int, int]]:
    """(path, size, modification time) of every local file the sources read: a resumed run
    must read the same files as the one it resumes."""
    paths = []
    for source in sources:
        if source.path is not None:
            paths += expand_files([source.path])
        elif source.local_hub:
            paths += sorted(path for path in Path(source.hub).expanduser().rglob("*") if path.is_file())
    return [(str(path), path.stat().st_size, path.stat().st_mtime_ns) for path in paths]


def local_inputs(sources: Sequence[CorpusSource]) -> list[str]:
    """The local files and folders the sources read (hub ids are not local)."""
    return [source.path or source.hub for source in sources if source.path is not None or source.local_hub]
