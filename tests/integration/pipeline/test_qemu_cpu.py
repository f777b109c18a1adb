"""A different CPU, for real: `dvc repro` with every stage's interpreter run by qemu in user mode on
a named CPU model, so every library (onnxruntime's kernels and libgfortran's included, which no
environment variable reaches) reads that CPU's CPUID. The result must be dvc.lock.

qemu user mode does not follow exec, and the launcher re-executes itself when the pins are not yet
in the environment: so the wrapper sets them first (`python -m pipeline.pinning` prints them,
natively), and the launcher, finding them, runs the stage in the emulated process.

Why Haswell works here and did not before: numpy's AVX2 sort checks the tail of an array for NaNs
with `vmaskmovpd`; qemu (7.2 and 10.0 alike) faults on the masked-out lanes when they cross into an
unmapped page, a real CPU does not. With the pins, numpy never dispatches to AVX2.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from contract import load_dvc_lock, locked_outs
from harness import REPO_ROOT, copy_repo, venv_bin, venv_env
from harness.families import FAMILIES

pytestmark = pytest.mark.slow

QEMU = "qemu-x86_64-static"
EMULATED = "Haswell"  # AVX2 and FMA, no AVX-512: what most CI runners and laptops are


def qemu_python(bin_dir: Path, cpu: str) -> dict[str, str]:
    """An environment whose `python` is this venv's interpreter under `qemu -cpu CPU`."""
    if shutil.which(QEMU) is None:
        pytest.fail(f"{QEMU} is missing: `make test` installs it (imagetool/engine/engine.sh host-tools)")
    bin_dir.mkdir(parents=True)
    wrapper = bin_dir / "python"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'eval "$({sys.executable} -m pipeline.pinning)" || exit 2\n'
        f'exec {QEMU} -cpu {cpu} {sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    # Host mode: in the toolchain the stage would run in a container, natively, whatever CPU the
    # host's launcher was shown. Here the stage itself must meet the emulated CPU.
    env = venv_env(LOCKSTEP_TRAIN="host")
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    return env


def repro(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [venv_bin("dvc"), "repro", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=1200
    )


def fresh_repo(dest: Path) -> Path:
    repo = copy_repo(dest)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return repo


def test_the_default_pipeline_on_an_emulated_avx2_cpu_gives_dvc_lock(tmp_path: Path) -> None:
    repo = fresh_repo(tmp_path / "repo")
    proc = repro(repo, qemu_python(tmp_path / "bin", EMULATED))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (repo / "dvc.lock").read_text() == (REPO_ROOT / "dvc.lock").read_text()


def test_a_tree_family_on_an_emulated_avx2_cpu_gives_the_native_lock(tmp_path: Path) -> None:
    """HistGradientBoosting on penguins: the family numpy's AVX2 loops change when unpinned."""
    repo = fresh_repo(tmp_path / "repo")
    FAMILIES["hist-gradient-boosting"].write_params(REPO_ROOT / "params.yaml", repo / "params.yaml")
    native = repro(repo, venv_env())  # in the toolchain, natively
    assert native.returncode == 0, native.stderr[-2000:]
    expected = shutil.copy(repo / "dvc.lock", tmp_path / "native.lock")
    emulated = repro(repo, qemu_python(tmp_path / "bin", EMULATED), "--force")
    assert emulated.returncode == 0, emulated.stdout[-2000:] + emulated.stderr[-2000:]
    assert locked_outs(load_dvc_lock(repo / "dvc.lock")) == locked_outs(load_dvc_lock(Path(expected)))
    assert (repo / "dvc.lock").read_text() == Path(expected).read_text()


def test_a_cpu_below_the_pinned_level_is_refused_in_one_line(tmp_path: Path) -> None:
    """qemu64 has no SSE4.2 nor POPCNT: nothing to pin it to, so the stage exits 2 and says so."""
    env = qemu_python(tmp_path / "bin", "qemu64")
    proc = subprocess.run(
        ["python", "-m", "pipeline", "train"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [
        line
        for line in proc.stderr.splitlines()
        if not line.startswith((f"{QEMU}: warning", "warning: LOCKSTEP_TRAIN=host"))
    ]
    assert proc.returncode == 2, proc.stderr
    assert lines == [
        "error: cannot pin the numeric environment: this CPU is below x86-64-v2 "
        "(no SSSE3, SSE4_1, SSE4_2, POPCNT): nothing to pin it to"
    ]
