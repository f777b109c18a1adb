"""Stage `evaluate`: metrics and plots on the test split, and the model's metadata file."""

from __future__ import annotations

import sys
from importlib.metadata import version
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
from sklearn import metrics as skm
from sklearn.pipeline import Pipeline

from pipeline.data import Table, read_table, write_json
from pipeline.errors import PipelineError
from pipeline.params import PARAMS_FILE, Params, load_params
from pipeline.paths import CONFUSION_FILE, METADATA_FILE, METRICS_FILE, MODEL_FILE, ROC_FILE, TEST_CSV

# Versions of what the pickle depends on. Only the Python minor version: the patch level
# differs between hosts and must not change the metadata's md5.
LIBRARIES = ("scikit-learn", "numpy", "scipy", "joblib")


def evaluate(
    model: Pipeline, X: npt.NDArray[np.float64], y: npt.NDArray[np.str_], *, positive_class: str
) -> dict[str, float]:
    """Classification metrics of `model` on (X, y); ROC AUC against `positive_class`."""
    classes = [str(c) for c in model.classes_]
    if positive_class not in classes:
        raise PipelineError(
            f"{PARAMS_FILE}: evaluate.positive_class: {positive_class!r} is not a class "
            f"of the model ({', '.join(classes)})"
        )
    proba = model.predict_proba(X)[:, classes.index(positive_class)]
    pred = model.predict(X)
    is_pos = y == positive_class
    return {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y, pred)),
        "roc_auc": float(skm.roc_auc_score(is_pos, proba)),
        "f1": float(skm.f1_score(y, pred, pos_label=positive_class)),
        "precision": float(skm.precision_score(y, pred, pos_label=positive_class)),
        "recall": float(skm.recall_score(y, pred, pos_label=positive_class)),
        "log_loss": float(skm.log_loss(y, model.predict_proba(X), labels=model.classes_)),
        "n_test": len(y),
    }


def confusion_points(
    model: Pipeline, X: npt.NDArray[np.float64], y: npt.NDArray[np.str_]
) -> list[dict[str, str]]:
    """One {actual, predicted} record per test row: DVC's `confusion` template input."""
    return [{"actual": str(a), "predicted": str(p)} for a, p in zip(y, model.predict(X), strict=True)]


def roc_points(
    model: Pipeline, X: npt.NDArray[np.float64], y: npt.NDArray[np.str_], *, positive_class: str
) -> list[dict[str, float]]:
    """ROC curve points (fpr, tpr) for `positive_class`."""
    col = [str(c) for c in model.classes_].index(positive_class)
    fpr, tpr, _ = skm.roc_curve(y == positive_class, model.predict_proba(X)[:, col])
    return [{"fpr": float(f), "tpr": float(t)} for f, t in zip(fpr, tpr, strict=True)]


def build_metadata(model: Pipeline, test: Table, params: Params, scores: dict[str, float]) -> dict[str, Any]:
    """Everything the service needs to know about the model, besides the pickle itself."""
    return {
        "schema_version": 1,
        "target": test.target,
        "features": [{"name": n, "dtype": "float64"} for n in test.features],
        "classes": [str(c) for c in model.classes_],
        "example": dict(zip(test.features, test.X[0].tolist(), strict=True)),
        "library_versions": {
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            **{lib: version(lib) for lib in LIBRARIES},
        },
        "params": params.model_dump(),
        "metrics": scores,
        "model_file": MODEL_FILE.name,
    }


def main() -> None:
    params = load_params()
    test = read_table(TEST_CSV, params.prepare.target)
    model = joblib.load(MODEL_FILE)
    n_in = getattr(model, "n_features_in_", None)
    if n_in != len(test.features):
        raise PipelineError(f"{TEST_CSV}: {len(test.features)} features, model expects {n_in}")
    positive = params.evaluate.positive_class
    scores = evaluate(model, test.X, test.y, positive_class=positive)
    # Compute everything before writing anything: a failure leaves no partial outputs.
    outputs = {
        METRICS_FILE: scores,
        CONFUSION_FILE: confusion_points(model, test.X, test.y),
        ROC_FILE: roc_points(model, test.X, test.y, positive_class=positive),
        METADATA_FILE: build_metadata(model, test, params, scores),
    }
    for path, obj in outputs.items():
        write_json(path, obj)
