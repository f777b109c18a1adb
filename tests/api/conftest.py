"""Fixtures for the service tests: the real pipeline's artifacts (the repository's own `dvc repro`, and
other model families trained once per session in repo copies), app clients, and tampered copies."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.app import create_app
from tests.api.support import DEFAULT, Artifacts, TestClient
from tests.conftest import copy_repo, venv_bin

# Model families beyond the default, as a user would choose them: params.yaml overrides (dotted
# keys) for a repo copy whose `dvc repro` then writes real artifacts.
PENGUINS = {
    "prepare.raw_data": "data/raw/penguins.csv",
    "prepare.target": "species",
    "evaluate.positive_class": None,  # three species: macro averages
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
}


def set_dotted(doc: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
    doc[last] = value


def train_family(dest: Path, overrides: dict[str, Any]) -> Artifacts:
    """Copy the repository, apply the params overrides and run the real pipeline (`dvc repro`)."""
    repo = copy_repo(dest)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    params_file = repo / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    for key, value in overrides.items():
        set_dotted(params, key, value)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    # dvc.yaml's commands run `python`: it must be this interpreter, with the locked libraries.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [venv_bin("dvc"), "repro", "--quiet"], cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        pytest.fail(f"dvc repro failed for {overrides}:\n{done.stdout}\n{done.stderr}")
    return Artifacts(repo)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Artifacts]:
    """Factory: the artifacts of a model family from FAMILIES, trained once per session."""
    cache: dict[str, Artifacts] = {}

    def get(name: str) -> Artifacts:
        if name not in cache:
            cache[name] = train_family(tmp_path_factory.mktemp(name) / "repo", FAMILIES[name])
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
