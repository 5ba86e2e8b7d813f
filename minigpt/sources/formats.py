"""Records from files and hub datasets, for every source kind: JSON Lines read line by line,
JSON arrays, Parquet, and Hugging Face datasets (or local folders laid out like one) pinned to
the commit their revision names.

Bad records either stop the run with an error naming the file and line (`on_error: fail`) or
are skipped and counted (`on_error: skip`). Problems with a whole file (missing, empty, not
JSON, not UTF-8 in a JSON document) always stop the run: skipping a file silently would change
the dataset too much.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minigpt.config import Location
from minigpt.errors import MiniGPTError
from minigpt.files import expand_files, read_utf8

Record = dict[str, Any]


class RecordError(ValueError):
    """One record cannot be used; `skip` mode counts it by `kind`, `fail` mode reports it."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclass
class ErrorPolicy:
    on_error: str  # "fail" or "skip"
    hint: str = ""  # appended to the error in fail mode: how to skip instead, where that is possible
    skipped: Counter = field(default_factory=Counter)

    def handle(self, location: str, error: RecordError) -> None:
        if self.on_error == "fail":
            raise MiniGPTError(f"{location}: {error}{self.hint}")
        self.skipped[error.kind] += 1


# --------------------------------------------------------------------------- files

# json.loads raises JSONDecodeError for bad syntax, but plain ValueError for numbers too long
# to convert and RecursionError for absurdly deep nesting: all three are malformed input.
_JSON_ERRORS = (ValueError, RecursionError)


def _json_error(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at column {error.colno}"
    return f"{type(error).__name__}: {str(error)[:120]}"


def jsonl_lines(path: Path) -> Iterator[tuple[int, int, Any]]:
    """(line number, file offset after the line, its value or the RecordError it is) for every
    line of a JSONL file that is not blank; read line by line."""
    offset = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            offset += len(raw)
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")  # a leading BOM is not data
            except UnicodeDecodeError as error:
                yield number, offset, RecordError("invalid UTF-8", f"byte {error.start} of the line")
                continue
            if not line.strip():
                continue
            try:
                yield number, offset, json.loads(line)
            except _JSON_ERRORS as error:
                yield number, offset, RecordError("malformed JSON", _json_error(error))


def _read_jsonl(path: Path, policy: ErrorPolicy) -> Iterator[tuple[str, Record]]:
    records = 0
    for number, _, value in jsonl_lines(path):
        records += 1
        if isinstance(value, RecordError):
            policy.handle(f"{path}:{number}", value)
        else:
            yield f"{path}:{number}", value
    if records == 0:
        raise MiniGPTError(f"{path}: file is empty (no records)")


def _read_json(path: Path, policy: ErrorPolicy) -> Iterator[tuple[str, Record]]:
    text = read_utf8(path)
    try:
        document = json.loads(text)
    except _JSON_ERRORS as error:
        line = f":{error.lineno}" if isinstance(error, json.JSONDecodeError) else ""
        raise MiniGPTError(f"{path}{line}: malformed JSON: {_json_error(error)}") from None
    if not isinstance(document, list):
        raise MiniGPTError(f"{path}: expected a JSON array of records, got a {type(document).__name__}")
    for number, record in enumerate(document, start=1):
        yield f"{path}: record {number}", record


def _read_parquet(path: Path, policy: ErrorPolicy) -> Iterator[tuple[str, Record]]:
    import pyarrow.parquet  # imported here: only Parquet sources need it

    try:
        rows = pyarrow.parquet.read_table(path).to_pylist()
    except Exception as error:  # pyarrow raises several unrelated types for bad files
        raise MiniGPTError(f"{path}: not a readable Parquet file ({error})") from None
    for number, record in enumerate(rows, start=1):
        yield f"{path}: row {number}", record


_FILE_READERS = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet}


def read_records(pattern: str, policy: ErrorPolicy) -> Iterator[tuple[str, Record]]:
    """(location, record) for every record of the files a path or glob names."""
    for path in expand_files([pattern]):
        reader = _FILE_READERS.get(path.suffix.lower())
        if reader is None:
            raise MiniGPTError(f"{path}: unsupported file type (use .jsonl, .json or .parquet)")
        if path.stat().st_size == 0:
            raise MiniGPTError(f"{path}: file is empty")
        yield from reader(path, policy)


# --------------------------------------------------------------------------- hub datasets

_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")


def resolve_revision(source: Location) -> str | None:
    """The commit a hub source's revision names: a commit hash as given, a branch or tag asked
    of the hub (so a run records exactly which data it read); for a local folder, the commit
    `hf download --local-dir` noted for its files, or None (its `revision` is not used)."""
    if source.local_hub:
        return _downloaded_commit(Path(source.hub).expanduser())
    if _COMMIT_SHA.fullmatch(source.revision):
        return source.revision
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(source.hub, revision=source.revision).sha
    except Exception as error:  # offline, unknown id or revision
        raise MiniGPTError(
            f"source {source.label!r}: could not resolve revision {source.revision!r} of {source.hub!r} to a commit "
            f"on the Hugging Face Hub: {type(error).__name__}: {error}\n{_OFFLINE_ADVICE}"
        ) from None


def _downloaded_commit(folder: Path) -> str | None:
    """The one commit that `hf download --local-dir` recorded (first line of each file's
    .cache/huggingface/download/*.metadata), or None if there is none or several."""
    notes = (folder / ".cache" / "huggingface" / "download").rglob("*.metadata")
    commits = {note.read_text(encoding="utf-8").partition("\n")[0].strip() for note in notes}
    commit = commits.pop() if len(commits) == 1 else ""
    return commit if _COMMIT_SHA.fullmatch(commit) else None


_OFFLINE_ADVICE = (
    "Without access to the hub, download the dataset where the hub is reachable into data/raw/hub/ "
    "(README, 'Seed scale'; the 'local' preset reads the seed datasets from there) and point the "
    "source at that folder with 'hub:', or at its JSON, JSONL or Parquet files with 'path:'."
)


def load_hub_dataset(source: Location, streaming: bool = False):
    """A hub dataset (or a local folder laid out like one) at `source.revision`: its split as
    a `datasets` Dataset, or with `streaming` an IterableDataset that downloads as it is read."""
    try:
        import datasets

        location = str(Path(source.hub).expanduser()) if source.local_hub else source.hub
        return datasets.load_dataset(
            location,
            source.config,
            split=source.hub_split,
            revision=None if source.local_hub else source.revision,
            streaming=streaming,
        )
    except Exception as error:  # offline, unknown id, bad revision: all need the same advice
        raise MiniGPTError(
            f"source {source.label!r}: could not load {source.hub!r} (revision {source.revision}, "
            f"split {source.hub_split}): {type(error).__name__}: {error}\n{_OFFLINE_ADVICE}"
        ) from None


def hub_records(source: Location) -> Iterator[tuple[str, Record]]:
    """Rows of a hub dataset (or of a local folder laid out like one), at `source.revision`."""
    for number, record in enumerate(load_hub_dataset(source), start=1):
        yield f"{source.hub}@{source.revision} ({source.hub_split}) row {number}", record
