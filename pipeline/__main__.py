"""Run one stage with a pinned numeric environment: `python -m pipeline STAGE`.

Floating-point results (and so the model's bytes and the metrics) depend on which kernels run and
on how many threads split the work: OpenBLAS, numpy and glibc pick their kernels from the CPU, and
read the settings that pin them only when they load or when the process starts. So the launcher
re-executes the interpreter once with the pins (pipeline/pinning.py), checks that every
dispatcher reports the pinned level, and only then runs the stage.
"""

from __future__ import annotations

import importlib
import os
import sys

from pipeline.pinning import REEXEC_MARK, PinError, check, needs_reexec, pinned_environ, reexec_command

STAGES = ("prepare", "train", "evaluate", "export")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in STAGES:
        print(f"usage: python -m pipeline {{{','.join(STAGES)}}}", file=sys.stderr)
        return 2
    from pipeline.toolchain import dispatch  # the locked toolchain, unless LOCKSTEP_TRAIN=host

    # The pins' re-execution below comes back here: the stage already has its place by then.
    if not os.environ.get(REEXEC_MARK) and (status := dispatch(argv[0])) is not None:
        return status
    if needs_reexec(os.environ):
        if os.environ.get(REEXEC_MARK):  # the pins did not survive the re-execution: no loop
            print("error: the numeric pins were lost when the interpreter restarted", file=sys.stderr)
            return 2
        if "numpy" in sys.modules:  # too late to pin anything in this process
            print("error: numpy was imported before the numeric environment was pinned", file=sys.stderr)
            return 2
        command = reexec_command(argv)
        os.execve(command[0], command, {**pinned_environ(os.environ), REEXEC_MARK: "1"})
    try:
        check()
    except PinError as exc:
        print(f"error: cannot pin the numeric environment: {exc}", file=sys.stderr)
        return 2
    from pipeline.errors import run_stage

    stage = importlib.import_module(f"pipeline.{argv[0]}")
    return run_stage(stage.main)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
