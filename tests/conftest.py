"""Fixtures shared by every test package; the plain functions they use are in harness/."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from harness import DEFAULT, REPO_ROOT, Artifacts, copy_repo, dated_csv, train_family, venv_env
from tests.api.support import TestClient

# The suite builds and verifies linux/amd64: a linux/arm64 rebuild costs ~50 s under emulation, so
# the arm64 claims (rebuild == image.lock, serving) live in tests/integration/test_platforms.py, which
# names its platform, and share one build (its refusals, which need none, in tests/imagetool/).
# `make test` has prepared both platforms' inputs.
# `make test PLATFORM=linux/arm64` runs the rest against arm64 instead.
if not os.environ.get("PLATFORM"):
    os.environ["PLATFORM"] = "linux/amd64"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def engine() -> None:
    """The Docker engine, (re)started: daemons do not survive between sessions."""
    proc = subprocess.run(
        [sys.executable, "-m", "imagetool", "engine", "start"],
        cwd=REPO_ROOT,
        env=venv_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"cannot start the Docker engine (run `make engine`): {proc.stderr}"


@pytest.fixture
def fresh_clone(tmp_path: Path) -> Callable[[], Path]:
    """Factory: a fresh-clone-like copy of the repo (tracked sources, no outputs, no DVC cache)
    in its own git repository, so tests can run `dvc` there without touching the real tree."""

    def make() -> Path:
        dest = copy_repo(tmp_path / f"repo{len(list(tmp_path.iterdir()))}")
        subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
        return dest

    return make


# Model families beyond the default, as a user would choose them: params.yaml overrides (dotted
# keys) for a repo copy whose `dvc repro` then writes real artifacts.
PENGUINS = {
    "prepare.raw_data": "data/raw/penguins.csv",
    "prepare.target": "species",
    "evaluate.positive_class": None,  # three species: macro averages
}
DATED = {
    "prepare.raw_data": "data/raw/dated.csv",
    "prepare.target": "busy",
    "evaluate.positive_class": "yes",
}
FAMILIES: dict[str, dict[str, Any]] = {
    # Multi-class, two categorical columns, missing values: the ONNX path.
    "penguins-forest": {
        **PENGUINS,
        "train.estimator.class": "sklearn.ensemble.RandomForestClassifier",
        "train.estimator.params": {"n_estimators": 100},
    },
    # A regressor on the same data (target body mass).
    "penguins-regressor": {
        **PENGUINS,
        "prepare.target": "body_mass_g",
        "prepare.drop_missing_target": True,  # two penguins were not weighed
        "train.estimator.class": "sklearn.ensemble.HistGradientBoostingRegressor",
        "train.estimator.params": {},
    },
    # skl2onnx has no converter for label propagation: the exact path, honestly reached.
    "penguins-exact": {
        **PENGUINS,
        "train.estimator.class": "sklearn.semi_supervised.LabelPropagation",
        "train.estimator.params": {"kernel": "knn"},
    },
    # A date column (ISO 8601, with gaps) beside a number and a category; the ONNX path.
    "dated-forest": {
        **DATED,
        "train.estimator.class": "sklearn.ensemble.RandomForestClassifier",
        "train.estimator.params": {"n_estimators": 50},
    },
    # The same data on the exact path: the pickle takes the date's parts too.
    "dated-exact": {
        **DATED,
        "train.estimator.class": "sklearn.semi_supervised.LabelPropagation",
        "train.estimator.params": {"kernel": "knn"},
    },
}
# Files a family's repo copy gets before `dvc repro`.
FILES = {name: {"data/raw/dated.csv": dated_csv()} for name in ("dated-forest", "dated-exact")}


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Artifacts]:
    """Factory: the artifacts of a model family from FAMILIES, trained once per session."""
    cache: dict[str, Artifacts] = {}

    def get(name: str) -> Artifacts:
        if name not in cache:
            repo = tmp_path_factory.mktemp(name) / "repo"
            cache[name] = train_family(repo, FAMILIES[name], FILES.get(name))
        return cache[name]

    return get


@pytest.fixture(scope="session")
def default_artifacts() -> Artifacts:
    DEFAULT.require()
    return DEFAULT


@pytest.fixture(scope="session")
def metadata(default_artifacts: Artifacts) -> dict[str, Any]:
    return default_artifacts.metadata_document()


@pytest.fixture(scope="session")
def feature_names(metadata: dict[str, Any]) -> list[str]:
    return [f["name"] for f in metadata["features"]]


@pytest.fixture(scope="session")
def example(metadata: dict[str, Any], feature_names: list[str]) -> dict[str, Any]:
    """The metadata's example row, in feature order (the file may sort its keys)."""
    return {name: metadata["example"][name] for name in feature_names}


@pytest.fixture(scope="module")
def client(default_artifacts: Artifacts) -> Iterator[TestClient]:
    """One app with the default model, started once per test module (lifespan included)."""
    with TestClient(create_app(default_artifacts.settings())) as test_client:
        yield test_client


@pytest.fixture
def artifact_copy(default_artifacts: Artifacts, tmp_path: Path) -> Artifacts:
    """A private copy of the default artifacts, free to tamper with."""
    return default_artifacts.copy_to(tmp_path / "copy")
