"""Run `dvc repro` and fail if it changed dvc.lock: the committed model must reproduce.

`make test` runs the pipeline before the tests. Were it free to rewrite dvc.lock, a change that
alters the model's bytes would re-record the golden hashes and the reproducibility tests would then
compare against the new file. This compares dvc.lock before and after the run, names every output
whose md5 moved, and exits 1. After an intended change (params, data, code) run `make repro` and
commit dvc.lock with it.

Usage: python -m imagetool repro-check [DVC_LOCK]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from contract import DVC_LOCK_FILE, ContractError, locked_outs, parse_dvc_lock


def _outs(text: str | bytes | None, lock: Path) -> dict[str, str]:
    """path -> md5 of every stage output in a dvc.lock text (empty for no lock); ContractError
    names `lock` and the field if the text is malformed."""
    return locked_outs(parse_dvc_lock(text, lock)) if text is not None else {}


def drift(before: str | bytes | None, after: str | bytes | None, lock: Path = DVC_LOCK_FILE) -> list[str]:
    """One line per difference between two dvc.lock texts: changed, new or vanished outputs."""
    if before == after:
        return []
    old, new = _outs(before, lock), _outs(after, lock)
    lines = [
        f"{path}: md5 {old.get(path, '(none)')} -> {new.get(path, '(none)')}"
        for path in sorted(old.keys() | new.keys())
        if old.get(path) != new.get(path)
    ]
    # Same outputs but other bytes: deps, params or the lock's layout changed.
    return lines or ["dvc.lock changed (dependencies or params recorded differently; outputs unchanged)"]


def check(lock: Path) -> int:
    """`python -m imagetool repro-check [LOCK]`: run `dvc repro`; 1, naming each output, if it
    changed the lock; 2 for a malformed lock."""
    before = lock.read_bytes() if lock.exists() else None
    try:
        _outs(before, lock)  # a malformed committed lock: say which field, before DVC trips on it
    except ContractError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run = subprocess.run(["dvc", "repro"], cwd=lock.resolve().parent, check=False)  # the lock's project
    if run.returncode != 0:
        return run.returncode
    try:
        changes = drift(before, lock.read_bytes() if lock.exists() else None, lock)
    except ContractError as exc:  # what `dvc repro` wrote: not expected, but one line all the same
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if changes:
        print(
            f"error: `dvc repro` changed {lock}; the committed pipeline does not reproduce:", file=sys.stderr
        )
        for line in changes:
            print(f"  {line}", file=sys.stderr)
        print(
            "  (after an intended change to params, data or code: `make repro`, review, commit dvc.lock)",
            file=sys.stderr,
        )
        return 1
    return 0
