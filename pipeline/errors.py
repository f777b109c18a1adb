"""One error type for bad input, and the wrapper that turns it into a one-line exit."""

from __future__ import annotations

import sys
from collections.abc import Callable

from contract import ContractError


class PipelineError(Exception):
    """Bad input: the message names the file and the column or key that is wrong."""


def run_stage(main: Callable[[], None]) -> int:
    """Run a stage's main() and return its exit code: bad input becomes one line on stderr and 2.
    ContractError is bad input too: an artifact or dvc.lock that is malformed or not the one
    dvc.lock records (contract.load_verified_pickle)."""
    try:
        main()
    except (PipelineError, ContractError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
