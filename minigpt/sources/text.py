"""kind `text`: plain text for pretraining, one document per `.txt` block (documents separated
by blank lines) or per `.jsonl`/`.parquet` record (its `text_column`), or a hub dataset read
with `streaming=True`. Nothing is read before it is needed, so a token budget downloads only
what it uses, and memory stays constant whatever the size of the corpus.

The reader yields raw values with their language score; the corpus decides what is a document
(`minigpt/corpus.py`: normalizing, filtering, the validation split).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from minigpt.config import CorpusSource
from minigpt.errors import MiniGPTError
from minigpt.files import expand_files, text_blocks
from minigpt.sources.formats import RecordError, jsonl_lines, load_hub_dataset, resolve_revision

SUFFIXES = (".txt", ".jsonl", ".parquet")
LANGUAGE_SCORE = "language_score"  # FineWeb-2's language identification score, where a source has one
# A value read: the text (or whatever the record held instead, or the RecordError a line is), and its language score.
Value = tuple[Any, Any]


class TextReader:
    """The values of one corpus source. It counts the bytes of local files read
    (`bytes_done` of `bytes_total`; None when streamed from the hub) for a progress estimate."""

    kind: ClassVar[str] = "text"

    def __init__(self, source: CorpusSource):
        self.source = source
        self.files = expand_files([source.path]) if source.path is not None else []
        for path in self.files:
            if path.suffix.lower() not in SUFFIXES:
                raise MiniGPTError(f"{path}: unsupported corpus file (use {', '.join(SUFFIXES)})")
        self.bytes_total = sum(path.stat().st_size for path in self.files) if source.path is not None else None
        self.bytes_done = 0
        # A hub source's commit, once resolved (or given when resuming: "main" may have moved since).
        self.pinned, self.commit = False, None

    def pin(self, commit: str | None) -> None:
        """Read the hub dataset at this commit (None: a local folder without a recorded commit)."""
        self.pinned, self.commit = True, commit

    def values(self, skip: int = 0) -> Iterator[Value]:
        """Every value of the source, after the first `skip`."""
        return self._local_values(skip) if self.source.path is not None else self._hub_values(skip)

    def _local_values(self, skip: int) -> Iterator[Value]:
        readers = {".txt": self._txt_values, ".jsonl": self._jsonl_values, ".parquet": self._parquet_values}
        for path in self.files:
            size = path.stat().st_size
            if size == 0:
                raise MiniGPTError(f"{path}: file is empty")
            done_before = self.bytes_done
            for value in readers[path.suffix.lower()](path, done_before):
                if skip:
                    skip -= 1
                    continue
                yield value
            self.bytes_done = done_before + size

    def _txt_values(self, path: Path, done_before: int) -> Iterator[Value]:
        for line, block, offset in text_blocks(path):
            self.bytes_done = done_before + offset
            try:
                yield block.decode("utf-8"), None
            except UnicodeDecodeError as error:
                yield RecordError("invalid UTF-8", f"byte {error.start} of the block at line {line}"), None

    def _jsonl_values(self, path: Path, done_before: int) -> Iterator[Value]:
        for _, offset, value in jsonl_lines(path):
            self.bytes_done = done_before + offset
            if isinstance(value, dict):
                yield value.get(self.source.text_column), value.get(LANGUAGE_SCORE)
            else:  # a line that is not JSON or not UTF-8 (its RecordError), or JSON that is not an object
                yield (value if isinstance(value, RecordError) else None), None

    def _parquet_values(self, path: Path, done_before: int) -> Iterator[Value]:
        import pyarrow.parquet

        column = self.source.text_column
        try:
            table = pyarrow.parquet.ParquetFile(path)
            names = table.schema_arrow.names
            if column not in names:
                raise MiniGPTError(f"{path}: no column {column!r} (columns: {', '.join(names)}); set text_column")
            columns = [column] + ([LANGUAGE_SCORE] if LANGUAGE_SCORE in names else [])
            rows, size = max(1, table.metadata.num_rows), path.stat().st_size
            seen = 0
            for batch in table.iter_batches(batch_size=1024, columns=columns):
                texts = batch.column(column).to_pylist()
                scores = batch.column(LANGUAGE_SCORE).to_pylist() if len(columns) > 1 else [None] * len(texts)
                seen += len(texts)
                self.bytes_done = done_before + size * seen // rows
                yield from zip(texts, scores)
        except MiniGPTError:
            raise
        except Exception as error:  # pyarrow raises several unrelated types for bad files
            raise MiniGPTError(f"{path}: not a readable Parquet file ({type(error).__name__}: {error})") from None

    def _hub_values(self, skip: int) -> Iterator[Value]:
        source = self.source
        if not self.pinned:  # read at the commit the revision names now, and say which
            self.pin(resolve_revision(source))
        pinned = source.model_copy(update={"revision": self.commit or source.revision})
        dataset = load_hub_dataset(pinned, streaming=True)
        if dataset.features is not None and source.text_column not in dataset.features:
            raise MiniGPTError(
                f"source {source.label!r}: no column {source.text_column!r} "
                f"(columns: {', '.join(dataset.features)}); set text_column"
            )
        if skip:
            dataset = dataset.skip(skip)
        rows = iter(dataset)
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except Exception as error:  # a damaged file in the repository, a dropped connection
                raise MiniGPTError(
                    f"source {source.label!r}: reading {source.hub!r} failed: {type(error).__name__}: {error}"
                ) from None
            yield row.get(source.text_column), row.get(LANGUAGE_SCORE)
