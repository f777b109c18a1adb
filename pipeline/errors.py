"""One error type for bad input, and the wrapper that turns it into a one-line exit."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn


class PipelineError(Exception):
    """Bad input: the message names the file and the column or key that is wrong."""


def run_stage(main: Callable[[], None]) -> NoReturn:
    """Run a stage's main(); bad input becomes one line on stderr and exit code 2."""
    try:
        main()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(0)
