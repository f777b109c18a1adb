"""Stage `export`: the fitted model's parameters as plain JSON, so serving needs no pickle.

The service evaluates a scaler plus a binary logistic regression with numpy and the standard
library. Reading the parameters from JSON instead of unpickling them means the service never
imports scikit-learn (about 1.4 s of its start-up) and never runs code from a pickle. The export
carries check rows with the probabilities scikit-learn's own predict_proba gives for them; the
service refuses to start if it does not reproduce them.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.data import Table, read_table, write_json
from pipeline.errors import PipelineError
from pipeline.params import load_params
from pipeline.paths import EXPORT_FILE, MODEL_FILE, TEST_CSV

KIND = "standard_scaler+binary_logistic_regression"
SCHEMA_VERSION = 1
# Test rows whose probabilities travel with the export (plus an all-zero row: the intercept alone).
CHECK_ROWS = 8


def _linear_steps(model: Any) -> tuple[StandardScaler, LogisticRegression]:
    """The two fitted steps, or a PipelineError saying why the model cannot be exported."""
    steps = getattr(model, "steps", None)
    names = [type(step).__name__ for _, step in steps] if isinstance(steps, list) else [type(model).__name__]
    # Exact types only: a subclass may override transform or predict_proba.
    if (
        type(model) is not Pipeline
        or len(model.steps) != 2
        or type(model.steps[0][1]) is not StandardScaler
        or type(model.steps[1][1]) is not LogisticRegression
    ):
        raise PipelineError(
            f"{MODEL_FILE}: cannot export {' -> '.join(names)}: only StandardScaler -> LogisticRegression"
        )
    scaler, clf = model.steps[0][1], model.steps[1][1]
    if len(clf.classes_) != 2 or clf.coef_.shape[0] != 1:
        raise PipelineError(f"{MODEL_FILE}: cannot export a {len(clf.classes_)}-class model: binary only")
    return scaler, clf


def export_linear(
    model: Any, features: tuple[str, ...], check_rows: npt.NDArray[np.float64], *, model_md5: str
) -> dict[str, Any]:
    """The export document of a fitted StandardScaler -> binary LogisticRegression pipeline."""
    scaler, clf = _linear_steps(model)
    if clf.coef_.shape[1] != len(features):
        raise PipelineError(
            f"{MODEL_FILE}: model has {clf.coef_.shape[1]} features, data has {len(features)}"
        )
    rows = np.vstack([check_rows, np.zeros((1, len(features)))])
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "estimator": " ".join(repr(model).split()),
        "source": {"path": str(MODEL_FILE), "md5": model_md5},
        "features": list(features),
        "classes": [str(c) for c in clf.classes_],
        # JSON floats written with repr() round-trip bit for bit.
        "mean": scaler.mean_.tolist() if scaler.with_mean else None,
        "scale": scaler.scale_.tolist() if scaler.with_std else None,
        "coef": clf.coef_[0].tolist(),
        "intercept": float(clf.intercept_[0]),
        "check": {"rows": rows.tolist(), "probabilities": model.predict_proba(rows).tolist()},
    }


def main() -> None:
    params = load_params()
    test: Table = read_table(TEST_CSV, params.prepare.target)
    try:
        raw = MODEL_FILE.read_bytes()
    except OSError as exc:
        raise PipelineError(f"{MODEL_FILE}: cannot read: {exc.strerror}") from None
    model = joblib.load(io.BytesIO(raw))  # the bytes whose md5 is recorded
    md5 = hashlib.md5(raw, usedforsecurity=False).hexdigest()
    write_json(EXPORT_FILE, export_linear(model, test.features, test.X[:CHECK_ROWS], model_md5=md5))
