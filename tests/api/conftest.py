"""Fixtures for the service tests: the real DVC artifacts, an app client, and tampered copies."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from api.app import create_app
from tests.api.support import (
    DVC_LOCK,
    EXPORT,
    METADATA,
    MODEL,
    TEST_SPLIT,
    ArtifactCopy,
    TestClient,
    make_settings,
    require_artifacts,
)


@pytest.fixture(scope="session")
def metadata() -> dict[str, Any]:
    require_artifacts()
    doc: dict[str, Any] = orjson.loads(METADATA.read_bytes())
    return doc


@pytest.fixture(scope="session")
def feature_names(metadata: dict[str, Any]) -> list[str]:
    return [f["name"] for f in metadata["features"]]


@pytest.fixture(scope="session")
def example(metadata: dict[str, Any]) -> dict[str, float]:
    return dict(metadata["example"])


@pytest.fixture(scope="session")
def test_split(feature_names: list[str]) -> tuple[list[list[float]], list[str]]:
    """Rows of data/prepared/test.csv in feature order, and the target column."""
    with TEST_SPLIT.open(newline="") as handle:
        reader = csv.DictReader(handle)
        records = list(reader)
        target = next(c for c in reader.fieldnames or [] if c not in feature_names)
    return [[float(r[n]) for n in feature_names] for r in records], [r[target] for r in records]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """One app with the real model, started once per test module (lifespan included)."""
    require_artifacts()
    with TestClient(create_app(make_settings())) as test_client:
        yield test_client


@pytest.fixture
def artifact_copy(tmp_path: Path) -> ArtifactCopy:
    """A private copy of the real artifacts, free to tamper with."""
    require_artifacts()
    (tmp_path / "models").mkdir()
    shutil.copy2(MODEL, tmp_path / "models" / "model.joblib")
    shutil.copy2(EXPORT, tmp_path / "models" / "model.json")
    shutil.copy2(METADATA, tmp_path / "models" / "metadata.json")
    shutil.copy2(DVC_LOCK, tmp_path / "dvc.lock")
    return ArtifactCopy(tmp_path)
