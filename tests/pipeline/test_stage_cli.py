"""Stages as DVC runs them: `python -m pipeline.<stage>` in a working directory."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

STAGE_OUTPUTS = {
    "prepare": ["data/prepared/train.csv", "data/prepared/test.csv"],
    "train": ["models/model.joblib"],
    "evaluate": ["models/metadata.json", "reports/metrics.json", "reports/plots/roc.json"],
    "export": ["models/model.json"],
}


@pytest.fixture
def workdir(tmp_path: Path, repo_root: Path) -> Path:
    """A directory with the pipeline, params and raw data, and no outputs."""
    shutil.copytree(
        repo_root / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(repo_root / "data/raw", tmp_path / "data/raw")
    shutil.copy(repo_root / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def run_stage(cwd: Path, stage: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", stage],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_clean_failure(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {proc.stderr}"
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def assert_no_outputs(cwd: Path, stage: str) -> None:
    leftovers = [p for p in STAGE_OUTPUTS[stage] if (cwd / p).exists()]
    leftovers += [str(p) for p in cwd.rglob("*.tmp")]
    assert leftovers == []


def test_all_stages_run_and_write_their_outputs(workdir: Path) -> None:
    for stage in STAGE_OUTPUTS:
        proc = run_stage(workdir, stage)
        assert proc.returncode == 0, proc.stderr
        for out in STAGE_OUTPUTS[stage]:
            assert (workdir / out).stat().st_size > 0


BAD_CSVS = {
    "missing-target": ("a,b\n1,2\n3,4\n", ["no target column 'diagnosis'"]),
    "non-numeric": ("a,diagnosis\n1,x\nten,y\n", ["line 3, column 'a'", "'ten' is not a number"]),
    "missing-value": ("a,diagnosis\n1,x\n,y\n", ["line 3, column 'a'", "missing value"]),
    "empty": ("", ["empty file"]),
    "header-only": ("a,diagnosis\n", ["no data rows"]),
    "one-class": ("a,diagnosis\n1,x\n2,x\n3,x\n", ["needs at least 2 classes"]),
}


@pytest.mark.parametrize("case", BAD_CSVS, ids=list(BAD_CSVS))
def test_prepare_rejects_bad_csv_with_one_line_and_no_output(workdir: Path, case: str) -> None:
    text, fragments = BAD_CSVS[case]
    (workdir / "data/raw/breast_cancer.csv").write_text(text)
    proc = run_stage(workdir, "prepare")
    assert_clean_failure(proc, "data/raw/breast_cancer.csv", *fragments)
    assert_no_outputs(workdir, "prepare")


BAD_PARAMS = {
    "missing-key": ("", "train.C: missing"),
    "ill-typed": ("  C: strong\n", "train.C"),
    "unknown-key": ("  C: 1.0\n  depth: 3\n", "train.depth: unknown key"),
}


@pytest.mark.parametrize("case", BAD_PARAMS, ids=list(BAD_PARAMS))
def test_train_rejects_bad_params_with_one_line_and_no_output(workdir: Path, case: str) -> None:
    assert run_stage(workdir, "prepare").returncode == 0
    replacement, fragment = BAD_PARAMS[case]
    params = workdir / "params.yaml"
    text, count = re.subn(r"(?m)^  C: .*\n", replacement, params.read_text())
    assert count == 1
    params.write_text(text)
    proc = run_stage(workdir, "train")
    assert_clean_failure(proc, "params.yaml", fragment)
    assert_no_outputs(workdir, "train")


def test_evaluate_rejects_unknown_positive_class_and_writes_nothing(workdir: Path) -> None:
    for stage in ("prepare", "train"):
        assert run_stage(workdir, stage).returncode == 0
    params = workdir / "params.yaml"
    params.write_text(params.read_text().replace("positive_class: malignant", "positive_class: benignn"))
    proc = run_stage(workdir, "evaluate")
    assert_clean_failure(proc, "params.yaml", "evaluate.positive_class", "'benignn'")
    assert_no_outputs(workdir, "evaluate")


def test_train_names_the_missing_input(workdir: Path) -> None:
    proc = run_stage(workdir, "train")
    assert_clean_failure(proc, "data/prepared/train.csv", "cannot read")


def test_launcher_rejects_an_unknown_stage(workdir: Path) -> None:
    proc = run_stage(workdir, "deploy")
    assert proc.returncode == 2
    assert "usage: python -m pipeline {prepare,train,evaluate,export}" in proc.stderr
