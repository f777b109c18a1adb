"""pipeline.evaluate's pure functions: metrics by task and the metadata document."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.data import Table
from pipeline.evaluate import build_metadata, classification_metrics, regression_metrics, roc_points
from pipeline.features import model_input
from pipeline.params import TrainParams, load_params
from tests.pipeline.support import LOGISTIC, small_schema, train


def test_classification_metrics_are_in_range(table: Table) -> None:
    model = train(table, small_schema(), params=LOGISTIC)
    X = model_input(table.X, small_schema())
    scores = classification_metrics(model, X, table.y, positive="pos")
    for key in ("accuracy", "balanced_accuracy", "roc_auc", "f1", "precision", "recall"):
        assert 0.85 <= scores[key] <= 1.0, key
    roc = roc_points(model, X, table.y, positive="pos")
    assert roc[0] == {"fpr": 0.0, "tpr": 0.0}
    assert roc[-1] == {"fpr": 1.0, "tpr": 1.0}


def test_regression_metrics_report_rmse_mae_r2(table: Table) -> None:
    y = np.nan_to_num(table.X["a"].to_numpy()) * 3.0 + table.X["b"].to_numpy()
    params = TrainParams.model_validate({"estimator": {"class": "sklearn.linear_model.Ridge"}, "seed": 0})
    reg = Table(target="label", X=table.X, y=y)
    model = train(reg, small_schema("regression"), params=params)
    scores = regression_metrics(model, model_input(table.X, small_schema("regression")), y)
    assert set(scores) == {"rmse", "mae", "r2", "n_test"}
    assert scores["r2"] > 0.8


def test_metadata_describes_features_task_estimator_and_example(table: Table, repo_root: Path) -> None:
    model = train(table, small_schema(), params=LOGISTIC)
    params = load_params(repo_root / "params.yaml")
    meta = build_metadata(model, small_schema(), table, params, {"accuracy": 1.0})
    assert meta["schema_version"] == 2
    assert meta["task"] == "binary"
    assert meta["features"][2] == {
        "name": "colour",
        "kind": "categorical",
        "categories": ["blue", "red"],
        "missing": True,
    }
    assert meta["classes"] == ["neg", "pos"]
    assert meta["example"] == {"a": None, "b": table.X["b"][0], "colour": None}
    assert meta["estimator"]["class"] == params.train.estimator.class_
    assert {"python", "scikit-learn", "numpy", "pandas"} <= set(meta["library_versions"])
    json.dumps(meta, allow_nan=False)
