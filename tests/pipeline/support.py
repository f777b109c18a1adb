"""Small in-memory data and a fitted model, shared by the stage modules' unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sklearn.pipeline import Pipeline

from contract.features import Feature
from contract.schema import Schema
from pipeline.data import Table
from pipeline.estimator import build_estimator
from pipeline.params import PrepareParams, TrainParams
from pipeline.train import train as train_with_estimator

LOGISTIC = TrainParams.model_validate(
    {
        "estimator": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
        "seed": 0,
    }
)


def train(table: Table, schema: Schema, *, params: TrainParams) -> Pipeline:
    return train_with_estimator(
        table, schema, estimator=build_estimator(params.estimator, seed=params.seed), params=params
    )


def small_schema(task: str = "classification") -> Schema:
    return Schema(
        target="label",
        task=task,
        features=(
            Feature("a", "numeric", None, True),
            Feature("b", "numeric", None, False),
            Feature("colour", "categorical", ("blue", "red"), True),
        ),
    )


def csv_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "in.csv"
    path.write_text(text)
    return path


def prepare_params(**overrides: Any) -> PrepareParams:
    base: dict[str, Any] = {"raw_data": "in.csv", "target": "label", "test_size": 0.25, "seed": 0}
    return PrepareParams(**(base | overrides))
