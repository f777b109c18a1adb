"""contract.serving: serving plans of the exact path, a regressor and a multiclass model with categorical
and date features round-trip through the types, with their metadata."""

from __future__ import annotations

import copy

import pytest

from contract import METADATA_FILE, SERVING_FILE, ContractError
from contract.metadata import Metadata
from contract.serving import ServingPlan, path_of
from tests.contract.support import committed


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


def test_the_path_the_image_tooling_reads_alone() -> None:
    assert path_of({"path": "sklearn"}, "s.json") == "sklearn"
    with pytest.raises(
        ContractError, match=r"^s.json: path 'tensorflow' is not one of \('onnx', 'sklearn'\)$"
    ):
        path_of({"path": "tensorflow"}, "s.json")
