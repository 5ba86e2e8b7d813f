"""File helpers shared by every stage: atomic writes and JSON/JSONL output.

Stages write through these helpers so that an interrupted or failed run never leaves a
half-written output behind: content goes to a temporary sibling first and is renamed into
place only once it is complete (a rename within one directory is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from minigpt.errors import DISK_ERRORS, MiniGPTError


def _temporary_prefix(path: Path) -> str:
    """Temporaries are named after their target and the process writing them, so that a later
    run can tell a dead process's leftovers from a live writer's."""
    return f".{path.name}.{os.getpid()}."


def remove_stale_temporaries(path: Path) -> None:
    """Delete the temporaries of `path` left by processes that no longer run (killed with -9,
    or by a power cut, mid-write): up to the size of the output each, invisible otherwise."""
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = leftover.name[len(path.name) + 2 :].split(".", 1)[0]
        if not pid.isdigit() or _running(int(pid)):
            continue
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def check_writable(path: str | Path) -> None:
    """Fail now, not after an hour of work, when `path` cannot be written: its folder cannot
    be made or is not writable."""
    folder = Path(path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise MiniGPTError(f"cannot write {path}: {error.strerror or error} ({folder})") from None
    if not os.access(folder, os.W_OK):
        raise MiniGPTError(f"cannot write {path}: {folder} is not writable")


def _disk_error(path: Path, error: OSError) -> MiniGPTError:
    return MiniGPTError(f"could not write {path}: {error.strerror or error} (nothing partial was kept)")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """The path of a temporary sibling of `path`, for a writer that opens its file by name;
    renamed onto `path` once the writer is done. A full or failing disk ends as a MiniGPTError
    naming `path`, with nothing partial kept."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, name = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in DISK_ERRORS:
            raise _disk_error(path, error) from None
        raise


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[Any]:
    """Open a temporary sibling of `path` for writing; rename it onto `path` on success (see
    `atomic_path`)."""
    encoding = None if "b" in mode else "utf-8"
    with atomic_path(path) as tmp, open(tmp, mode, encoding=encoding, newline=None if "b" in mode else "\n") as handle:
        yield handle


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory; on success it replaces `path` as a whole. A full or
    failing disk ends as a MiniGPTError naming `path`, with nothing partial kept."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        replace_directory(tmp, path)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, OSError) and error.errno in DISK_ERRORS:
            raise _disk_error(path, error) from None
        raise


def replace_directory(source: Path, target: Path) -> None:
    """Move the complete directory `source` to `target`, replacing whatever `target` was."""
    target = Path(target)
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old)
    else:
        os.replace(source, target)


def write_json(path: str | Path, data: Any) -> None:
    """Write `data` as pretty, key-ordered-as-given UTF-8 JSON (stable bytes for DVC)."""
    with atomic_file(path) as handle:
        json.dump(data, handle, ensure_ascii=False, indent=2)
        handle.write("\n")


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line; return the number of rows written."""
    count = 0
    with atomic_file(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file written by `write_jsonl` (project outputs, trusted format)."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def warn_if_untracked(patterns: Iterable[str], stage: str, *tracked_dirs: Path) -> None:
    """Note input files outside the directories that dvc.yaml declares as the stage's dependencies."""
    for pattern in patterns:
        path = Path(pattern).resolve()
        if not any(path.is_relative_to(Path(tracked).resolve()) for tracked in tracked_dirs):
            print(
                f"note: {pattern} is outside {' and '.join(f'{tracked}/' for tracked in tracked_dirs)}: add it to "
                f"the deps of '{stage}' in dvc.yaml so that dvc repro notices when it changes",
                file=sys.stderr,
            )


def expand_files(patterns: Iterable[str]) -> list[Path]:
    """The files each pattern names, in order: a glob's matches sorted, or the path itself.

    A glob that matches nothing, or a plain path that is not a file, is an error.
    """
    paths: list[Path] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise MiniGPTError(f"no file matches {pattern!r}")
            paths.extend(Path(match) for match in matches)
        elif Path(pattern).is_file():
            paths.append(Path(pattern))
        else:
            raise MiniGPTError(f"{pattern}: file not found")
    return paths


def text_blocks(path: Path) -> Iterator[tuple[int, bytes, int]]:
    """(first line number, raw bytes, file offset after it) of each block of a text file:
    blocks are separated by blank lines. Read line by line: memory holds one block."""
    block: list[bytes] = []
    first = offset = 0
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            offset += len(line)
            if number == 1 and line.startswith(b"\xef\xbb\xbf"):  # a leading BOM is not text
                line = line[3:]
            if line.strip():
                first = first or number
                block.append(line)
            elif block:
                yield first, b"".join(block), offset
                block, first = [], 0
    if block:
        yield first, b"".join(block), offset


def read_utf8(path: Path) -> str:
    """A whole text file, a leading BOM dropped; invalid UTF-8 is an error naming the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise MiniGPTError(f"{path}:{line}: invalid UTF-8 (byte {error.start} of the file)") from None
