"""Stage `train`: fit preprocessing + the estimator params.yaml names, deterministically."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import joblib
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from contract import MODEL_FILE, MODEL_SHA256_FILE, SCHEMA_FILE, TRAIN_CSV, sha256_lines
from contract.schema import Schema
from pipeline.data import Table, atomic_write, read_table
from pipeline.errors import PipelineError
from pipeline.estimator import PARAMS_KEY, build_estimator
from pipeline.features import build_model, model_input
from pipeline.params import TrainParams, load_params
from pipeline.schema import read_schema


def train(table: Table, schema: Schema, *, estimator: BaseEstimator, params: TrainParams) -> Pipeline:
    """Fit the pipeline on the training split.

    One BLAS/OpenMP thread while fitting: the result must not depend on the host's thread
    settings. HistGradientBoosting's fitted trees (so its pickle) differ with the OpenMP thread
    count; `python -m pipeline` pins the variables before the libraries load, this pins the pools.
    """
    if schema.task == "classification" and len(set(table.y.tolist())) < 2:
        raise PipelineError(f"column {schema.target!r}: training labels need at least 2 classes")
    model = build_model(schema, estimator)
    with threadpool_limits(limits=1), warnings.catch_warnings():
        # Not converging within max_iter is the user's hyperparameter choice, not an input error.
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            model.fit(model_input(table.X, schema), table.y)
        except (ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise PipelineError(f"{PARAMS_KEY}: fitting {params.estimator.class_} failed: {first}") from None
    return model


def save_model(model: Pipeline, path: Path = MODEL_FILE, sums: Path = MODEL_SHA256_FILE) -> None:
    """Pickle with joblib, atomically (no half-written model for DVC to cache), and record the
    pickle's sha256 in `sums` (git-tracked: what is checked before unpickling, beside dvc.lock's md5)."""
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    data = buffer.getvalue()
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    with atomic_write(sums) as fh:
        fh.write(sha256_lines({path: data}))


def main() -> None:
    params = load_params()
    # Refuse a bad estimator or hyperparameter first, naming params.yaml, before reading any data.
    estimator = build_estimator(params.train.estimator, seed=params.train.seed)
    schema = read_schema(SCHEMA_FILE)
    table = read_table(TRAIN_CSV, schema)
    try:
        model = train(table, schema, estimator=estimator, params=params.train)
    except PipelineError as exc:
        raise PipelineError(f"{TRAIN_CSV}: {exc}") from None
    save_model(model)
    print(
        f"train: fitted {params.train.estimator.class_} on {len(table.y)} rows, {len(schema.names)} features"
    )
