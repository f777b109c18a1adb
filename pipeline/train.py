"""Stage `train`: fit the model on the training split, deterministically."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from pipeline.data import atomic_write, read_table
from pipeline.errors import PipelineError
from pipeline.params import TrainParams, load_params
from pipeline.paths import MODEL_FILE, TRAIN_CSV


def train(X: npt.NDArray[np.float64], y: npt.NDArray[np.str_], *, params: TrainParams) -> Pipeline:
    """Fit scaler + logistic regression.

    Logistic regression: its pickle is identical across thread counts (unlike
    HistGradientBoosting), and one-row inference is a 30-term dot product, which the
    service can evaluate without scikit-learn's per-call overhead.
    """
    if len(np.unique(y)) < 2:
        raise PipelineError("training labels need at least 2 classes")
    model = Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "clf",
                LogisticRegression(
                    C=params.C, max_iter=params.max_iter, tol=params.tol, random_state=params.seed
                ),
            ),
        ]
    )
    # One BLAS/OpenMP thread while fitting: the result must not depend on the host's
    # thread settings (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, core count).
    with threadpool_limits(limits=1):
        model.fit(X, y)
    return model


def save_model(model: Pipeline, path: Path = MODEL_FILE) -> None:
    """Pickle with joblib, atomically (no half-written model for DVC to cache)."""
    with atomic_write(path, "wb") as fh:
        joblib.dump(model, fh)


def main() -> None:
    params = load_params()
    table = read_table(TRAIN_CSV, params.prepare.target)
    try:
        model = train(table.X, table.y, params=params.train)
    except PipelineError as exc:
        raise PipelineError(f"{TRAIN_CSV}: {exc}") from None
    save_model(model)
