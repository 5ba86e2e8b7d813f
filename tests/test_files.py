"""Saves leave nothing behind: not on an error, not on SIGTERM, and what a killed process left
is removed by the next save of the same output; a full disk is one line naming the path."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from minigpt.errors import MiniGPTError
from minigpt.files import atomic_directory, atomic_file
from tests.helpers import REPO


def test_a_full_disk_is_an_error_naming_the_output_with_nothing_partial_kept(tmp_path):
    def full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(MiniGPTError, match=f"could not write {tmp_path / 'model'}: No space left on device"):
        with atomic_directory(tmp_path / "model") as folder:
            (folder / "weights.bin").write_bytes(b"half")
            full()
    with pytest.raises(MiniGPTError, match="could not write .*metrics.json: No space left"):
        with atomic_file(tmp_path / "metrics.json"):
            full()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):  # other errors are left as they are
        with atomic_file(tmp_path / "metrics.json"):
            raise FileNotFoundError(errno.ENOENT, "an input")


def test_leftovers_of_dead_processes_go_with_the_next_save_and_live_writers_are_left_alone(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale_dir = tmp_path / f".model.{dead.stdout.strip()}.abc.tmp"
    stale_dir.mkdir()
    (stale_dir / "model.safetensors").write_bytes(b"0" * 1000)
    live = tmp_path / f".model.{os.getpid()}.xyz.tmp"  # this process: a save in progress
    live.mkdir()
    with atomic_directory(tmp_path / "model") as folder:
        (folder / "config.json").write_text("{}")
    assert sorted(path.name for path in tmp_path.iterdir()) == [live.name, "model"]


def test_sigterm_during_a_save_leaves_no_temporary(tmp_path):
    script = (
        "import time\n"
        "from minigpt.errors import run_main\n"
        "from minigpt.files import atomic_directory\n"
        "def main():\n"
        f"    with atomic_directory({str(tmp_path / 'model')!r}) as folder:\n"
        "        (folder / 'weights.bin').write_bytes(b'0' * 1000)\n"
        "        print('writing', flush=True)\n"
        "        time.sleep(60)\n"
        "run_main(main)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process.returncode == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_an_output_that_cannot_be_written_is_named_before_any_work(tmp_path):
    from minigpt.files import check_writable

    check_writable(tmp_path / "new" / "scores.json")  # a folder it can make is fine
    assert (tmp_path / "new").is_dir()
    with pytest.raises(MiniGPTError, match="cannot write /proc/nope/x.json"):
        check_writable("/proc/nope/x.json")
