"""The pinned numeric environment (pipeline/pinning.py): masks add up with the caller's, the launcher
re-executes once and never loops, and each dispatcher's own report is what decides."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.pinning import GLIBC_MASKED, NUMPY_DISABLED, REEXEC_MARK, needs_reexec, pinned_environ


def test_pins_add_up_with_the_callers_masks_and_keep_its_other_tunables() -> None:
    env = pinned_environ(
        {
            "NPY_DISABLE_CPU_FEATURES": "AVX512_SPR,X86_V4",
            "GLIBC_TUNABLES": "glibc.malloc.arena_max=1:glibc.cpu.hwcaps=-AVX512F,-ERMS",
            "NPY_ENABLE_CPU_FEATURES": "X86_V3",
            "HOME": "/somewhere",
        }
    )
    assert env["NPY_DISABLE_CPU_FEATURES"].split() == ["AVX512_SPR", "X86_V4", "X86_V3", "AVX512_ICL"]
    arena, hwcaps = env["GLIBC_TUNABLES"].split(":")
    assert arena == "glibc.malloc.arena_max=1"
    masks = hwcaps.removeprefix("glibc.cpu.hwcaps=").split(",")
    assert masks[:2] == ["-AVX512F", "-ERMS"]
    assert set(masks) == {"-ERMS", *(f"-{name}" for name in GLIBC_MASKED)}
    assert "NPY_ENABLE_CPU_FEATURES" not in env  # it would raise numpy's level again
    assert env["HOME"] == "/somewhere"
    assert env["OPENBLAS_CORETYPE"] == "Prescott"


def test_pinning_is_idempotent_so_the_reexecuted_process_runs_the_stage() -> None:
    once = pinned_environ({"PATH": "/bin"})
    assert pinned_environ(once) == once
    assert not needs_reexec(once)
    assert needs_reexec({"PATH": "/bin"})
    assert set(once["NPY_DISABLE_CPU_FEATURES"].split()) == set(NUMPY_DISABLED)


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_check_passes_pinned_and_names_the_dispatcher_left_unpinned() -> None:
    """Measured in fresh interpreters: with the pins, every dispatcher reports x86-64-v2; with only
    numpy's pin (glibc's read at start is missing), the check names glibc."""
    base = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "NPY_DISABLE_CPU_FEATURES")}
    code = "from pipeline.pinning import check; check(); print('pinned')"
    pinned = run_python(code, pinned_environ(base))
    assert pinned.returncode == 0, pinned.stderr
    assert pinned.stdout == "pinned\n"
    no_glibc = {k: v for k, v in pinned_environ(base).items() if k != "GLIBC_TUNABLES"}
    proc = run_python(code, no_glibc)
    assert "PinError: glibc's ifuncs still use" in proc.stderr
    no_numpy = {k: v for k, v in pinned_environ(base).items() if k != "NPY_DISABLE_CPU_FEATURES"}
    proc = run_python(code, no_numpy)
    assert "PinError: numpy still dispatches to X86_V3" in proc.stderr


@pytest.mark.slow
def test_the_launcher_refuses_to_loop_when_the_pins_do_not_survive_exec() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"} | {REEXEC_MARK: "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "train"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["error: the numeric pins were lost when the interpreter restarted"]
