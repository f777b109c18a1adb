"""Run one stage with a pinned numeric environment: `python -m pipeline STAGE`.

Floating-point results (and so the model's bytes and the metrics) depend on which BLAS kernel
runs and on how many threads split the work. OpenBLAS picks its kernel from the CPU at load
time (AVX2, AVX-512, ...), so two machines can train different bits from the same data. Before
numpy is imported, pin the most portable x86-64 kernel and one thread; both are read only when
the library loads, hence this launcher instead of a setting inside the stages.
"""

from __future__ import annotations

import importlib
import os
import sys

STAGES = ("prepare", "train", "evaluate", "export")
PINNED_ENV = {
    "OPENBLAS_CORETYPE": "Prescott",  # SSE3 kernels: present on every x86-64 CPU
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in STAGES:
        print(f"usage: python -m pipeline {{{','.join(STAGES)}}}", file=sys.stderr)
        return 2
    from pipeline.toolchain import dispatch  # the locked toolchain, unless LOCKSTEP_TRAIN=host

    if (status := dispatch(argv[0])) is not None:
        return status
    if "numpy" in sys.modules:  # too late to pin anything
        print("error: numpy was imported before the numeric environment was pinned", file=sys.stderr)
        return 2
    os.environ.update(PINNED_ENV)
    from pipeline.errors import run_stage

    stage = importlib.import_module(f"pipeline.{argv[0]}")
    return run_stage(stage.main)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
