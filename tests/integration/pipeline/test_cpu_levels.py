"""The CPU-level matrix: every family of the README's table, on both data sets, gives one dvc.lock
whether the host is this one, an AVX2 machine without AVX-512, or an x86-64-v2 machine without AVX
and FMA. The smaller CPUs are simulated the way the libraries themselves read the CPU (numpy's
NPY_DISABLE_CPU_FEATURES, glibc's hwcaps tunable); the launcher must add its pins to those masks,
not replace them. The control runs the same matrix with the launcher's pins bypassed and shows it
catches a difference, so equal locks are the pins' doing. (A real emulated CPU: test_qemu_cpu.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from contract import load_dvc_lock, locked_outs
from harness import REPO_ROOT, copy_repo, venv_bin, venv_env
from harness.families import FAMILIES, Family

# 15 cases x 3 levels: about 5 CPU-minutes, which the first test's setup carries (module fixture).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

_AVX512 = ("AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL", "AVX512_FP16")
# What an AVX2 machine without AVX-512 and an x86-64-v2 machine look like to numpy and glibc.
LEVELS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {
        "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
        "GLIBC_TUNABLES": "glibc.cpu.hwcaps=" + ",".join(f"-{f}" for f in _AVX512),
    },
    "x86-64-v2": {
        "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
        "GLIBC_TUNABLES": "glibc.cpu.hwcaps=" + ",".join(f"-{f}" for f in ("AVX", "AVX2", "FMA", *_AVX512)),
    },
}
# The README's family table (harness/families.py) plus MLPClassifier, which the pins' absence changes
# at both smaller levels; each on penguins and on breast cancer.
TABLE = ("logistic-regression", "random-forest", "hist-gradient-boosting", "gradient-boosting",
         "hist-gradient-boosting-regressor", "nearest-centroid")  # fmt: skip
MLP = Family(
    "sklearn.neural_network.MLPClassifier", {"max_iter": 300}, "penguins.csv", "species", "onnx", "double"
)
TARGETS = {"penguins.csv": ("species", "body_mass_g"), "breast_cancer.csv": ("diagnosis", "worst_area")}


def on_data(family: Family, data: str) -> Family:
    classifier, regressor = TARGETS[data]
    return replace(
        family, data=data, target=regressor if family.estimator.endswith("Regressor") else classifier
    )


# "default": params.yaml as committed, whose lock must be dvc.lock itself.
CASES: dict[str, Family | None] = {"default": None} | {
    f"{name}-{data.removesuffix('.csv')}": on_data(family, data)
    for name, family in [*((n, FAMILIES[n]) for n in TABLE), ("mlp", MLP)]
    for data in TARGETS
}
# The stage without the launcher: what a pipeline that pinned only OpenBLAS and threads would run.
UNPINNED_CMD = (
    "python -c 'import sys, pipeline.errors as e, pipeline.{0} as s; sys.exit(e.run_stage(s.main))'"
)
OLD_PINS = {"OPENBLAS_CORETYPE": "Prescott", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Run:
    locks: dict[str, str]  # level -> dvc.lock's text
    outs: dict[str, dict[str, str]]  # level -> {output: md5}


def dvc_repro(repo: Path, env: dict[str, str], *args: str) -> None:
    proc = subprocess.run(
        [venv_bin("dvc"), "repro", *args],
        cwd=repo,
        env=venv_env(**env),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"{repo.name} {env}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"


def run_levels(
    root: Path, name: str, family: Family | None, levels: list[str], *, pinned: bool = True
) -> Run:
    """One repo copy, `dvc repro` at the first level, then train, evaluate and export again at each
    other level (prepare only parses the CSV: its outputs are shared)."""
    repo = copy_repo(root / name)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)  # as conftest's fresh_clone: DVC wants one
    if family is not None:
        family.write_params(REPO_ROOT / "params.yaml", repo / "params.yaml")
    env: dict[str, str] = {}
    if not pinned:
        dvc_yaml = repo / "dvc.yaml"
        text = dvc_yaml.read_text()
        for stage in ("prepare", "train", "evaluate", "export"):
            text = text.replace(f"cmd: python -m pipeline {stage}", f"cmd: {UNPINNED_CMD.format(stage)}")
        dvc_yaml.write_text(text)
        env = dict(OLD_PINS)
    locks, outs = {}, {}
    for i, level in enumerate(levels):
        if i == 0:
            dvc_repro(repo, {**env, **LEVELS[level]})
        else:
            dvc_repro(
                repo, {**env, **LEVELS[level]}, "--force", "--single-item", "train", "evaluate", "export"
            )
        locks[level] = (repo / "dvc.lock").read_text()
        outs[level] = locked_outs(load_dvc_lock(repo / "dvc.lock"))
    return Run(locks, outs)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every case at every level, two cases at a time (the CI machine's two cores)."""
    root = tmp_path_factory.mktemp("cpu-levels")
    keep = {k: os.environ[k] for k in ("NPY_DISABLE_CPU_FEATURES", "GLIBC_TUNABLES") if k in os.environ}
    assert not keep, f"the matrix simulates CPU levels itself; unset {keep}"
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(run_levels, root, name, family, list(LEVELS)) for name, family in CASES.items()
        }
        runs = {name: future.result() for name, future in futures.items()}
    # Each case's output md5s per level, kept beside the copies for whoever reads a failure.
    (root / "matrix.json").write_text(json.dumps({name: run.outs for name, run in runs.items()}, indent=1))
    return runs


def differing(run: Run, level: str, base: str = "native") -> dict[str, tuple[str, str]]:
    return {
        out: (md5, run.outs[level].get(out, "-"))
        for out, md5 in run.outs[base].items()
        if run.outs[level].get(out) != md5
    }


@pytest.mark.parametrize("case", list(CASES))
def test_every_cpu_level_gives_the_same_dvc_lock(matrix: dict[str, Run], case: str) -> None:
    run = matrix[case]
    for level in LEVELS:
        assert differing(run, level) == {}, f"{case} at {level}: outputs differ from native"
        assert run.locks[level] == run.locks["native"], f"{case} at {level}"


def test_the_default_pipeline_gives_the_committed_dvc_lock_at_every_level(matrix: dict[str, Run]) -> None:
    committed = (REPO_ROOT / "dvc.lock").read_text()
    for level, lock in matrix["default"].locks.items():
        assert lock == committed, level


CONTROLS = {
    # numpy's AVX2 loops (no AVX-512) fit other trees.
    "hist-gradient-boosting-penguins": "avx2",
    # glibc's non-FMA libm (and numpy without AVX2) give the default model other bytes.
    "default": "x86-64-v2",
}


@pytest.mark.parametrize("case", list(CONTROLS))
def test_control_without_the_pins_the_matrix_sees_the_cpu(tmp_path: Path, case: str) -> None:
    level = CONTROLS[case]
    run = run_levels(tmp_path, case, CASES[case], ["native", level], pinned=False)
    assert "models/model.joblib" in differing(run, level), f"{case}: unpinned, {level} trained the same bytes"
