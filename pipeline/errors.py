"""One error type for bad input, and the wrapper that turns it into a one-line exit."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable

from contract import ContractError


class PipelineError(Exception):
    """Bad input: the message names the file and the column or key that is wrong."""


def run_stage(main: Callable[[], None]) -> int:
    """Run a stage's main() and return its exit code: bad input becomes one line on stderr and 2.
    ContractError is bad input too: an artifact or dvc.lock that is malformed or not the one
    dvc.lock records (contract.load_verified_pickle)."""
    stage = main.__module__.rpartition(".")[2]
    start = time.perf_counter()
    try:
        main()
    except (PipelineError, ContractError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # The last line of the stage's summary, which `dvc repro` shows with the stage's output.
    print(f"{stage}: done in {time.perf_counter() - start:.1f} s, peak memory {peak_mib():,} MiB", flush=True)
    return 0


def peak_mib() -> int:
    """This process's peak resident memory (in the toolchain: the stage's own, not docker's)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10))
