"""Stage `evaluate`: metrics and plots on the test split, and the model's metadata file."""

from __future__ import annotations

import sys
from importlib.metadata import version
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the dev lock
from sklearn import metrics as skm
from sklearn.pipeline import Pipeline

from contract import (
    CONFUSION_FILE,
    METADATA_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PARAMS_FILE,
    RESIDUALS_FILE,
    ROC_FILE,
    SCHEMA_FILE,
    TEST_CSV,
    load_verified_pickle,
)
from contract.metadata import Metadata
from contract.schema import Schema
from pipeline.data import Table, read_table, write_json
from pipeline.errors import PipelineError
from pipeline.features import model_input
from pipeline.params import Params, load_params
from pipeline.schema import read_schema

# Versions of what the pickle depends on. Only the Python minor version: the patch level
# differs between hosts and must not change the metadata's md5.
LIBRARIES = ("scikit-learn", "numpy", "scipy", "joblib", "pandas")


def task_of_model(model: Pipeline, schema: Schema) -> str:
    if schema.task == "regression":
        return "regression"
    return "binary" if len(model.classes_) == 2 else "multiclass"


def positive_class_of(model: Pipeline, positive_class: str | None) -> str:
    classes = [str(c) for c in model.classes_]
    if positive_class is None:
        return classes[-1]
    if positive_class not in classes:
        raise PipelineError(
            f"{PARAMS_FILE}: evaluate.positive_class: {positive_class!r} is not a class "
            f"of the model ({', '.join(classes)})"
        )
    return positive_class


def classification_metrics(
    model: Pipeline, X: pd.DataFrame, y: npt.NDArray[np.str_], *, positive: str
) -> dict[str, float]:
    """Binary: F1/precision/recall/ROC AUC of `positive`. Multi-class: their macro averages
    (ROC AUC one-vs-rest)."""
    proba = model.predict_proba(X)
    pred = model.predict(X)
    classes = [str(c) for c in model.classes_]
    binary = len(classes) == 2
    avg: dict[str, Any] = {"pos_label": positive} if binary else {"average": "macro", "zero_division": 0}
    if binary:
        auc = skm.roc_auc_score(y == positive, proba[:, classes.index(positive)])
    else:
        auc = skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=model.classes_)
    return {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y, pred)),
        "roc_auc": float(auc),
        "f1": float(skm.f1_score(y, pred, **avg)),
        "precision": float(skm.precision_score(y, pred, **avg)),
        "recall": float(skm.recall_score(y, pred, **avg)),
        "log_loss": float(skm.log_loss(y, proba, labels=model.classes_)),
        "n_test": len(y),
    }


def regression_metrics(model: Pipeline, X: pd.DataFrame, y: npt.NDArray[np.float64]) -> dict[str, float]:
    pred = model.predict(X)
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(y, pred))),
        "mae": float(skm.mean_absolute_error(y, pred)),
        "r2": float(skm.r2_score(y, pred)),
        "n_test": len(y),
    }


def confusion_points(model: Pipeline, X: pd.DataFrame, y: npt.NDArray[np.str_]) -> list[dict[str, str]]:
    """One {actual, predicted} record per test row: DVC's `confusion` template input."""
    return [{"actual": str(a), "predicted": str(p)} for a, p in zip(y, model.predict(X), strict=True)]


def roc_points(
    model: Pipeline, X: pd.DataFrame, y: npt.NDArray[np.str_], *, positive: str
) -> list[dict[str, float]]:
    """ROC curve points (fpr, tpr) of `positive` against the rest."""
    col = [str(c) for c in model.classes_].index(positive)
    fpr, tpr, _ = skm.roc_curve(y == positive, model.predict_proba(X)[:, col])
    return [{"fpr": float(f), "tpr": float(t)} for f, t in zip(fpr, tpr, strict=True)]


def residual_points(model: Pipeline, X: pd.DataFrame, y: npt.NDArray[np.float64]) -> list[dict[str, float]]:
    """One {predicted, residual} point per test row (residual = actual - predicted)."""
    pred = model.predict(X)
    return [{"predicted": float(p), "residual": float(a - p)} for a, p in zip(y, pred, strict=True)]


def _json_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value


def build_metadata(
    model: Pipeline, schema: Schema, test: Table, params: Params, scores: dict[str, float | None]
) -> dict[str, Any]:
    """Everything the service needs to know about the model, besides the model itself."""
    first = test.X.iloc[0]
    return Metadata(
        target=schema.target,
        task=task_of_model(model, schema),
        features=schema.features,
        classes=tuple(str(c) for c in model.classes_) if schema.task == "classification" else (),
        example={name: _json_value(first[name]) for name in schema.names},
        estimator={"class": params.train.estimator.class_, "params": params.train.estimator.params},
        library_versions={
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            **{lib: version(lib) for lib in LIBRARIES},
        },
        params=params.model_dump(by_alias=True),
        metrics=scores,
    ).to_json()


def main() -> None:
    params = load_params()
    schema = read_schema(SCHEMA_FILE)
    test = read_table(TEST_CSV, schema)
    model, _ = load_verified_pickle(MODEL_FILE)  # its md5 must be dvc.lock's first
    if list(getattr(model, "feature_names_in_", [])) != [c.name for c in schema.model_features]:
        raise PipelineError(f"{MODEL_FILE}: its features differ from {SCHEMA_FILE}'s: re-run train")
    X = model_input(test.X, schema)
    # Compute everything before writing anything: a failure leaves no partial outputs.
    if schema.task == "regression":
        scores = regression_metrics(model, X, test.y)
        plots: dict[Any, Any] = {
            CONFUSION_FILE: [],
            ROC_FILE: [],
            RESIDUALS_FILE: residual_points(model, X, test.y),
        }
    else:
        positive = positive_class_of(model, params.evaluate.positive_class)
        scores = classification_metrics(model, X, test.y, positive=positive)
        plots = {
            CONFUSION_FILE: confusion_points(model, X, test.y),
            ROC_FILE: roc_points(model, X, test.y, positive=positive),
            RESIDUALS_FILE: [],
        }
    # A metric that is undefined on this split (NaN: e.g. ROC AUC when the test split holds one
    # class) is written as null, which JSON and `dvc metrics show` take.
    metrics: dict[str, float | None] = {
        key: None if isinstance(v, float) and not np.isfinite(v) else v for key, v in scores.items()
    }
    outputs = {
        METRICS_FILE: metrics,
        **plots,
        METADATA_FILE: build_metadata(model, schema, test, params, metrics),
    }
    for path, obj in outputs.items():
        write_json(path, obj)
    shown = ", ".join(f"{key} {'undefined' if v is None else f'{v:.4g}'}" for key, v in metrics.items())
    print(f"evaluate: on {len(test.y)} test rows: {shown}")
