"""Preprocessing built from the column kinds, and the frame the fitted pipeline takes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the dev lock
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from contract import MISSING_STRING
from contract.dates import DATE_PARTS, part_names, parts_rows
from contract.schema import Schema
from pipeline.estimator import needs_scaling


def build_model(schema: Schema, estimator: BaseEstimator) -> Pipeline:
    """preprocess -> estimator. Numeric: median imputation, then scaling unless the estimator is
    a tree family. Categorical: a gap arrives as MISSING_STRING (constant imputation done by
    `model_input`, since ONNX string tensors cannot hold None), then one-hot over the levels the
    schema lists; a level never seen in training encodes as all zeros instead of failing."""
    numeric = [c.name for c in schema.model_features if c.kind == "numeric"]  # with dates' parts
    categorical = [c for c in schema.model_features if c.kind == "categorical"]
    numeric_steps: list[tuple[str, BaseEstimator]] = [("impute", SimpleImputer(strategy="median"))]
    if needs_scaling(estimator):
        numeric_steps.append(("scale", StandardScaler()))
    transformers: list[tuple[str, BaseEstimator, list[str]]] = []
    if numeric:
        transformers.append(("numeric", Pipeline(numeric_steps), numeric))
    if categorical:
        levels = [[*(c.categories or ()), *([MISSING_STRING] if c.missing else [])] for c in categorical]
        encoder = OneHotEncoder(categories=levels, handle_unknown="ignore", sparse_output=False)
        transformers.append(("categorical", encoder, [c.name for c in categorical]))
    # sparse_threshold=0: a dense matrix, which every estimator (and the ONNX converter) takes.
    preprocess = ColumnTransformer(transformers, sparse_threshold=0.0)
    return Pipeline([("preprocess", preprocess), ("estimator", estimator)])


def model_input(X: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """What the fitted pipeline takes: its input columns (Schema.model_features), a categorical gap
    as MISSING_STRING (numeric gaps stay NaN, which the imputer handles), a date as its parts
    (contract.dates; a gap or a value that is not a date: NaN in each part)."""
    out = X.loc[:, [c.name for c in schema.features if c.kind != "date"]].copy()
    for column in schema.features:
        if column.kind == "categorical":
            values = [MISSING_STRING if v is None or v != v else str(v) for v in out[column.name].tolist()]
            out[column.name] = pd.Series(values, dtype=object, index=out.index)
    for column in (c for c in schema.features if c.kind == "date"):
        parts = date_columns(X[column.name].tolist())
        for name, part in zip(part_names(column.name), parts, strict=True):
            out[name] = pd.Series(part, dtype=np.float64, index=X.index)
    return out


def date_columns(values: Sequence[Any]) -> list[npt.NDArray[np.float64]]:
    """The parts of each date (contract.dates.parts_rows) as one float64 column per part."""
    rows, _ = parts_rows(values)
    matrix = np.array(rows, dtype=np.float64).reshape(-1, len(DATE_PARTS))
    return [matrix[:, k].copy() for k in range(len(DATE_PARTS))]
