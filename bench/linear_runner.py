"""Bench only (not in the image): the hand-written linear predictor issue 8 weighs against onnxruntime.

A numpy runner built from the fitted pipeline's generalised linear parameters (median imputation,
scaling, one-hot levels, coef/intercept, sigmoid or softmax), plugged into the same service: the
app comes from `create_app(settings)` and, once its lifespan has loaded and checked the model, the
served runner is swapped for this one. `python -m bench.linear_runner` serves it with the service's
own uvicorn set-up (`api.__main__.main`), so the only difference between the two is the runner.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI

import contract
from api.app import create_app
from api.artifacts import verify_artifacts
from api.batch import Batch
from api.coalesce import Coalescer
from api.runners import Scores
from api.settings import Settings
from bench.ceiling import ceiling_routes
from contract.metadata import Metadata


class LinearRunner:
    """predict_proba of a fitted `preprocess -> LogisticRegression` pipeline (pipeline.features), in numpy."""

    kind = "linear-numpy"

    def __init__(self, pipeline: Any, metadata: Metadata, missing_string: str):
        preprocess, estimator = pipeline.named_steps["preprocess"], pipeline.named_steps["estimator"]
        numeric = [f.name for f in metadata.features if f.numeric]
        categorical = [f.name for f in metadata.features if not f.numeric]
        width = 0
        self._numeric_columns: np.ndarray = np.arange(0)
        self._levels: list[dict[str, int]] = []
        for name, transformer, columns in preprocess.transformers_:
            if name == "numeric":
                steps = dict(transformer.steps)
                self._numeric_columns = np.array([numeric.index(c) for c in columns])
                self._medians = steps["impute"].statistics_
                scaler = steps.get("scale")
                self._mean = scaler.mean_ if scaler is not None else np.zeros(len(columns))
                self._scale = scaler.scale_ if scaler is not None else np.ones(len(columns))
                width += len(columns)
            elif name == "categorical":
                assert list(columns) == categorical, "categorical columns in metadata order"
                for levels in transformer.categories_:
                    self._levels.append({str(level): width + k for k, level in enumerate(levels)})
                    width += len(levels)
        self._width = width
        self._coef = np.ascontiguousarray(estimator.coef_.T)  # (inputs, 1 or classes)
        self._intercept = estimator.intercept_
        self._missing = missing_string

    def predict(self, batch: Batch) -> Scores:
        x = batch.numeric[:, self._numeric_columns]
        x = np.where(np.isnan(x), self._medians, x)
        inputs = np.zeros((batch.rows, self._width))
        inputs[:, : x.shape[1]] = (x - self._mean) / self._scale
        for levels, column in zip(self._levels, batch.categorical, strict=True):
            for row, value in enumerate(column):
                position = levels.get(self._missing if value is None else value)
                if position is not None:  # an unseen category encodes as all zeros
                    inputs[row, position] = 1.0
        z = inputs @ self._coef + self._intercept
        if z.shape[1] == 1:
            positive = 1.0 / (1.0 + np.exp(-z[:, 0]))
            probabilities = np.column_stack([1.0 - positive, positive])
        else:
            e = np.exp(z - z.max(axis=1, keepdims=True))
            probabilities = e / e.sum(axis=1, keepdims=True)
        return Scores(labels=probabilities.argmax(axis=1).tolist(), probabilities=probabilities)


def linear_runner(settings: Settings) -> LinearRunner:
    """From the pickle, unpickled only once its md5 matches dvc.lock's."""
    artifacts = verify_artifacts(settings)  # metadata and serving plan, checked against dvc.lock
    model, _ = contract.load_verified_pickle(settings.model_path, settings.dvc_lock_path)
    return LinearRunner(model, artifacts.metadata, artifacts.serving.missing_string)


def with_linear_runner(app: FastAPI, runner: LinearRunner) -> FastAPI:
    """The app, serving `runner` instead of the verified one once its lifespan has loaded the model."""
    loaded = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with loaded(app):
            state = app.state.service
            model = state.model
            state.model = dataclasses.replace(model, scorer=Coalescer(runner, model.scorer.max_rows))
            yield

    app.router.lifespan_context = lifespan
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory, as api.app:app_from_env (with the ceiling mounted, as bench.ceiling's)."""
    settings = Settings()
    return with_linear_runner(create_app(settings, mounts=[ceiling_routes]), linear_runner(settings))


if __name__ == "__main__":
    from api.__main__ import main

    sys.exit(main(app="bench.linear_runner:app_from_env"))
