"""The one exception type users see, and the guard that turns it into a clean exit."""

from __future__ import annotations

import sys
from typing import Callable


class MiniGPTError(Exception):
    """A problem the user can fix (bad params, bad input file, missing stage output).

    Its message is the whole report: it names the file, line or key at fault and, where
    there is one, the command that fixes it. Stage scripts print it without a traceback.
    """


def run_main(main: Callable[[], None]) -> None:
    """Run a stage's `main`, printing a MiniGPTError as one clear message with exit code 1."""
    try:
        main()
    except MiniGPTError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
