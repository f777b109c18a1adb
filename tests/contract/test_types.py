"""The contract's typed documents: each reads the pipeline's own files and writes them back byte for
byte (the stages write through `to_json`), and each refusal is one line naming the file and the key."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from contract import METADATA_FILE, SCHEMA_FILE, SERVING_FILE, ContractError
from contract.features import Feature, features_from_json, model_features
from contract.metadata import Metadata, estimator_class
from contract.schema import Schema
from contract.serving import ServingPlan, path_of
from harness import REPO_ROOT


def written(doc: dict[str, Any]) -> bytes:
    """What the pipeline's write_json writes for `doc` (pipeline/data.py)."""
    return (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode()


def committed(path: Path) -> tuple[bytes, dict[str, Any]]:
    raw = (REPO_ROOT / path).read_bytes()
    return raw, json.loads(raw)


def test_schema_round_trips_the_prepared_schema_byte_for_byte() -> None:
    raw, doc = committed(SCHEMA_FILE)
    schema = Schema.from_json(doc, SCHEMA_FILE)
    assert written(schema.to_json()) == raw
    assert schema.names == [f["name"] for f in doc["features"]]


def test_metadata_and_serving_round_trip_the_models_files_byte_for_byte() -> None:
    meta_raw, meta_doc = committed(METADATA_FILE)
    metadata = Metadata.from_json(meta_doc, METADATA_FILE)
    assert written(metadata.to_json()) == meta_raw
    serving_raw, serving_doc = committed(SERVING_FILE)
    plan = ServingPlan.from_json(serving_doc, SERVING_FILE, metadata)
    assert written(plan.to_json()) == serving_raw
    assert plan.model_md5 == serving_doc["model"]["md5"]
    assert plan.tolerance == serving_doc["gate"]["tolerance"]


def test_the_exact_path_and_a_regressor_round_trip() -> None:
    """The other shapes the export writes: no onnx section, and a regressor's values and nulls."""
    _, meta_doc = committed(METADATA_FILE)
    _, serving_doc = committed(SERVING_FILE)
    regression = copy.deepcopy(meta_doc) | {"task": "regression", "classes": None}
    metadata = Metadata.from_json(regression, METADATA_FILE)
    assert not metadata.is_classifier
    assert metadata.to_json() == regression
    exact = copy.deepcopy(serving_doc)
    exact.update(path="sklearn", onnx=None, task="regression", classes=None)
    exact["gate"]["measure"] = "relative"
    exact["check"].update(expected=[0.5] * len(exact["check"]["rows"]), labels=None)
    plan = ServingPlan.from_json(exact, SERVING_FILE, metadata)
    assert plan.onnx is None
    assert plan.relative
    assert plan.check_labels is None
    assert plan.to_json() == exact


def test_a_multiclass_model_with_categorical_and_date_features_round_trips() -> None:
    """The feature kinds and the task the committed model does not have: categories, a date (whose
    parts the ONNX inputs feed), three classes."""
    _, meta_doc = committed(METADATA_FILE)
    _, serving_doc = committed(SERVING_FILE)
    features = [
        {"name": "size", "kind": "numeric", "categories": None, "missing": False},
        {"name": "colour", "kind": "categorical", "categories": ["blue", "red"], "missing": True},
        {"name": "when", "kind": "date", "categories": None, "missing": False},
    ]
    example = {"size": 1.5, "colour": None, "when": "2024-02-29"}
    multiclass = copy.deepcopy(meta_doc) | {
        "task": "multiclass",
        "features": features,
        "classes": ["a", "b", "c"],
        "example": example,
    }
    metadata = Metadata.from_json(multiclass, METADATA_FILE)
    assert metadata.to_json() == multiclass
    plan_doc = copy.deepcopy(serving_doc)
    plan_doc.update(task="multiclass", classes=["a", "b", "c"])
    parts = ["when:days", "when:month", "when:weekday"]
    plan_doc["onnx"]["inputs"] = [
        {
            "name": "numbers",
            "features": ["size", "when:days", "when:month", "when:weekday"],
            "type": "double",
        },
        {"name": "colour", "features": ["colour"], "type": "string"},
    ]
    plan_doc["check"].update(rows=[example], expected=[[0.2, 0.3, 0.5]], labels=["c"])
    plan = ServingPlan.from_json(plan_doc, SERVING_FILE, metadata)
    assert plan.onnx is not None
    assert plan.onnx.inputs[0].features == ("size", *parts)
    assert plan.to_json() == plan_doc


def test_a_dates_parts_follow_the_other_features_as_numeric_columns() -> None:
    features = (
        Feature("when", "date", None, True),
        Feature("colour", "categorical", ("blue", "red"), False),
        Feature("size", "numeric", None, False),
    )
    columns = model_features(features)
    assert [f.name for f in columns] == ["colour", "size", "when:days", "when:month", "when:weekday"]
    assert all(f.numeric and f.missing for f in columns[2:])


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"schema_version": 2}, "schema.json: schema_version 2 is not 1: run `dvc repro`"),
        ({"task": "ranking"}, "schema.json: task 'ranking' is not one of classification, regression"),
        ({"target": 5}, "schema.json: target is missing or not a string"),
        ({"features": [{"kind": "numeric"}]}, "schema.json: features[0] has no name"),
        (
            {"features": [{"name": "a", "kind": "numeric"}, {"name": "a", "kind": "numeric"}]},
            "schema.json: feature names are empty or not unique",
        ),
        (
            {"features": [{"name": "d", "kind": "date"}, {"name": "d:month", "kind": "numeric"}]},
            "schema.json: feature 'd:month' is also a date's part",
        ),
    ],
)
def test_schema_refusals_name_the_file_and_the_key(change: dict[str, Any], says: str) -> None:
    _, doc = committed(SCHEMA_FILE)
    with pytest.raises(ContractError) as info:
        Schema.from_json(doc | change, "schema.json")
    assert str(info.value) == says


def test_a_feature_record_is_checked_where_it_is() -> None:
    with pytest.raises(ContractError, match=r"^m.json: features\[1\] \(c\): categories must be a list"):
        features_from_json(
            {"features": [{"name": "a", "kind": "numeric"}, {"name": "c", "kind": "categorical"}]}, "m.json"
        )
    assert Feature.from_json({"name": "a", "kind": "numeric", "categories": ["x"]}, "w").categories is None


def test_what_the_image_tooling_reads_alone() -> None:
    _, meta_doc = committed(METADATA_FILE)
    assert estimator_class(meta_doc, METADATA_FILE) == meta_doc["estimator"]["class"]
    with pytest.raises(ContractError, match=r"^m.json: estimator is missing or not an object$"):
        estimator_class({}, "m.json")
    assert path_of({"path": "sklearn"}, "s.json") == "sklearn"
    with pytest.raises(
        ContractError, match=r"^s.json: path 'tensorflow' is not one of \('onnx', 'sklearn'\)$"
    ):
        path_of({"path": "tensorflow"}, "s.json")
