"""Stages as DVC runs them: `python -m pipeline STAGE` in a working directory; bad input gives
one line naming the file and the key or column, exit status 2, and no output for DVC to cache."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from contract import md5_hex
from harness import lock_stage_outputs, malicious_pickle, pipeline_workdir
from tests.malformed_locks import BAD_LOCKS, BadLock, bad_lock_params

pytestmark = pytest.mark.slow

STAGE_OUTPUTS = {
    "prepare": ["data/prepared/train.csv", "data/prepared/test.csv", "data/prepared/schema.json"],
    "train": ["models/model.joblib"],
    "evaluate": ["models/metadata.json", "reports/metrics.json", "reports/plots/roc.json"],
    "export": ["models/model.onnx", "models/serving.json"],
}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory with the pipeline, the contract, params and raw data, and no outputs."""
    return pipeline_workdir(tmp_path)


def edit_params(workdir: Path, change: Callable[[dict[str, Any]], object]) -> None:
    path = workdir / "params.yaml"
    params = yaml.safe_load(path.read_text())
    change(params)
    path.write_text(yaml.safe_dump(params))


def run_stage(cwd: Path, stage: str) -> subprocess.CompletedProcess[str]:
    """`python -m pipeline STAGE`, then, if it succeeded, its outputs' lock entry as DVC writes it."""
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", stage],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode == 0:
        lock_stage_outputs(cwd, stage)
    return proc


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
    "missing-label": ("a,diagnosis\n1,x\n2,\n", ["line 3, column 'diagnosis': missing target"]),
    "entirely-empty-column": ("a,b,diagnosis\n1,,x\n2,NA,y\n3,,x\n4,,y\n", ["column 'b' is entirely empty"]),
    "non-finite": ("a,diagnosis\n1,x\ninf,y\n", ["line 3, column 'a'", "'inf' is not a finite number"]),
    "empty": ("", ["empty file"]),
    "header-only": ("a,diagnosis\n", ["no data rows"]),
    "one-class": ("a,diagnosis\n1,x\n2,x\n3,x\n", ["needs at least 2 classes"]),
    "too-many-levels": (
        "id,diagnosis\n" + "".join(f"patient-{i},{'xy'[i % 2]}\n" for i in range(60)),
        ["column 'id' has 60 distinct values, over prepare.max_categories=50"],
    ),
}


@pytest.mark.parametrize("case", BAD_CSVS, ids=list(BAD_CSVS))
def test_prepare_rejects_bad_csv_with_one_line_and_no_output(workdir: Path, case: str) -> None:
    text, fragments = BAD_CSVS[case]
    (workdir / "data/raw/breast_cancer.csv").write_text(text)
    proc = run_stage(workdir, "prepare")
    assert_clean_failure(proc, "data/raw/breast_cancer.csv", *fragments)
    assert_no_outputs(workdir, "prepare")


def _set_estimator(cls: str, params: dict[str, Any] | None = None) -> Callable[[dict[str, Any]], None]:
    def change(p: dict[str, Any]) -> None:
        p["train"]["estimator"] = {"class": cls, "params": params or {}}

    return change


BAD_ESTIMATORS = {
    "unknown-class": (_set_estimator("sklearn.ensemble.RandomJungleClassifier"), "train.estimator.class"),
    "not-a-predictor": (_set_estimator("sklearn.decomposition.PCA"), "neither a classifier nor a regressor"),
    "outside-sklearn": (_set_estimator("xgboost.XGBRFClassifier"), "not a scikit-learn class"),
    "rejected-hyperparameter": (
        _set_estimator("sklearn.ensemble.HistGradientBoostingClassifier", {"max_iter": 0}),
        "train.estimator.params: The 'max_iter' parameter",
    ),
    "unknown-hyperparameter": (
        _set_estimator("sklearn.linear_model.LogisticRegression", {"depth": 3}),
        "unexpected keyword argument 'depth'",
    ),
    "ill-typed-key": (lambda p: p["train"].update(seed="x"), "train.seed"),
    "unknown-key": (lambda p: p["train"].update(depth=3), "train.depth: unknown key"),
}


@pytest.mark.parametrize("case", BAD_ESTIMATORS, ids=list(BAD_ESTIMATORS))
def test_train_rejects_bad_estimator_params_with_one_line_and_no_output(workdir: Path, case: str) -> None:
    assert run_stage(workdir, "prepare").returncode == 0
    change, fragment = BAD_ESTIMATORS[case]
    edit_params(workdir, change)
    proc = run_stage(workdir, "train")
    assert_clean_failure(proc, "params.yaml", fragment)
    assert proc.stderr.startswith("error: params.yaml: "), proc.stderr
    assert_no_outputs(workdir, "train")


def test_prepare_rejects_an_unknown_estimator_class_too(workdir: Path) -> None:
    """prepare reads the class to know the task: a typo stops the pipeline at its first stage."""
    edit_params(workdir, _set_estimator("sklearn.linear_model.LogisticRegresion"))
    proc = run_stage(workdir, "prepare")
    assert_clean_failure(proc, "params.yaml: train.estimator.class", "'LogisticRegresion'")
    assert_no_outputs(workdir, "prepare")


def test_regressor_on_a_text_target_is_refused_naming_the_column(workdir: Path) -> None:
    edit_params(workdir, _set_estimator("sklearn.linear_model.Ridge"))
    proc = run_stage(workdir, "prepare")
    assert_clean_failure(proc, "column 'diagnosis'", "is not a number (a regressor needs a numeric target)")
    assert_no_outputs(workdir, "prepare")


def test_evaluate_rejects_unknown_positive_class_and_writes_nothing(workdir: Path) -> None:
    for stage in ("prepare", "train"):
        assert run_stage(workdir, stage).returncode == 0
    edit_params(workdir, lambda p: p["evaluate"].update(positive_class="benignn"))
    proc = run_stage(workdir, "evaluate")
    assert_clean_failure(proc, "params.yaml", "evaluate.positive_class", "'benignn'")
    assert_no_outputs(workdir, "evaluate")


def test_train_names_the_missing_input(workdir: Path) -> None:
    proc = run_stage(workdir, "train")
    assert_clean_failure(proc, "data/prepared/schema.json", "cannot read")


def test_launcher_rejects_an_unknown_stage(workdir: Path) -> None:
    proc = run_stage(workdir, "deploy")
    assert proc.returncode == 2
    assert "usage: python -m pipeline {prepare,train,evaluate,export}" in proc.stderr


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """prepare and train run once, their outputs locked as dvc repro locks them."""
    workdir = pipeline_workdir(tmp_path_factory.mktemp("trained"))
    for stage in ("prepare", "train"):
        assert run_stage(workdir, stage).returncode == 0
    return workdir


@pytest.fixture
def trained(trained_once: Path, tmp_path: Path) -> Path:
    """A private copy of trained_once, free to tamper with."""
    return Path(shutil.copytree(trained_once, tmp_path / "trained"))


MODEL = "models/model.joblib"
MODEL_READERS = ["evaluate", "export"]


@pytest.mark.parametrize("stage", MODEL_READERS)
def test_stage_refuses_a_pickle_that_differs_from_the_lock_before_it_runs(trained: Path, stage: str) -> None:
    """A swapped model (a poisoned DVC remote): exit 2, one line naming the file and both md5s,
    nothing written, and the pickle's payload never ran."""
    locked = md5_hex((trained / MODEL).read_bytes())
    marker = trained / "payload-ran"
    payload = malicious_pickle(marker)
    (trained / MODEL).write_bytes(payload)
    proc = run_stage(trained, stage)
    assert_clean_failure(proc)
    assert proc.stderr.strip() == (
        f"error: model {MODEL} has md5 {md5_hex(payload)} but dvc.lock records {locked}: refusing to load it"
    )
    assert not marker.exists()
    assert_no_outputs(trained, stage)


@pytest.mark.parametrize("stage", MODEL_READERS)
@pytest.mark.parametrize(
    ("unlock", "message"),
    [
        pytest.param(
            lambda lock: lock.write_text(lock.read_text().split("  train:")[0]),
            f"dvc.lock has no entry for {MODEL}: refusing an untracked file",
            id="no-entry",
        ),
        pytest.param(
            Path.unlink, "cannot read DVC lock file dvc.lock: No such file or directory", id="no-lock"
        ),
    ],
)
def test_stage_refuses_a_model_dvc_lock_does_not_record(
    trained: Path, stage: str, unlock: Callable[[Path], object], message: str
) -> None:
    marker = trained / "payload-ran"
    (trained / MODEL).write_bytes(malicious_pickle(marker))
    unlock(trained / "dvc.lock")
    proc = run_stage(trained, stage)
    assert_clean_failure(proc)
    assert proc.stderr.strip() == f"error: {message}"
    assert not marker.exists()
    assert_no_outputs(trained, stage)


# evaluate against every malformed lock; export (the same loader) against one refused on parsing
# and one refused on looking up the model's entry.
MALFORMED_LOCK_RUNS = [
    *(pytest.param("evaluate", p.values[0], id=f"evaluate-{p.id}") for p in bad_lock_params()),
    pytest.param("export", BAD_LOCKS["not-yaml"], id="export-not-yaml"),
    pytest.param("export", BAD_LOCKS["out-without-md5"], id="export-out-without-md5"),
]


@pytest.mark.parametrize(("stage", "case"), MALFORMED_LOCK_RUNS)
def test_stage_refuses_a_malformed_lock_naming_the_field(trained: Path, stage: str, case: BadLock) -> None:
    lock = trained / "dvc.lock"
    lock.write_bytes(case.spoil(lock.read_bytes()))
    proc = run_stage(trained, stage)
    assert_clean_failure(proc)
    assert proc.stderr.strip() == f"error: {case.expected('dvc.lock', MODEL)}"
    assert_no_outputs(trained, stage)
