"""The one exception type users see, and the guard that turns it into a clean exit."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

# When set, every stage appends {stage, seconds, peak_rss_mib, peak_gpu_mib} to this JSONL file
# as it finishes: the time and memory of each stage of a `dvc repro` or `dvc exp run`
# (peak_gpu_mib: what torch allocated on the GPU, null where the stage used none).
STAGE_LOG = "MINIGPT_STAGE_LOG"


# A full disk, a quota, a read-only or failing disk: what a user fixes on the machine, not in the code.
DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})


class MiniGPTError(Exception):
    """A problem the user can fix (bad params, bad input file, missing stage output).

    Its message is the whole report: it names the file, line or key at fault and, where
    there is one, the command that fixes it. Stage scripts print it without a traceback.
    """


def _stop(signum: int, _frame) -> None:
    raise SystemExit(128 + signum)  # unwinds like an error: every save removes its temporaries


def run_main(main: Callable[[], None]) -> None:
    """Run a stage's `main`, printing a MiniGPTError as one clear message with exit code 1.
    SIGTERM (what `kill`, a scheduler or DVC sends) stops it the way an error does, so that
    writes in progress clean up after themselves instead of leaving temporaries behind."""
    started = time.perf_counter()
    signal.signal(signal.SIGTERM, _stop)
    try:
        main()
    except MiniGPTError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except OSError as error:  # written outside the atomic helpers (a library's own file writes)
        if error.errno not in DISK_ERRORS:
            raise
        print(f"error: {error.filename or 'a file'}: {error.strerror}", file=sys.stderr)
        sys.exit(1)
    log = os.environ.get(STAGE_LOG)
    if log:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        entry = {
            "stage": Path(sys.argv[0]).stem,
            "seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mib": round(peak),
            "peak_gpu_mib": _peak_gpu_mib(),
        }
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


def _peak_gpu_mib() -> int | None:
    torch = sys.modules.get("torch")  # a stage that never imported torch used no GPU
    if torch is None or not torch.cuda.is_initialized():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20)
