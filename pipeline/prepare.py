"""Stage `prepare`: read the raw CSV, infer the column kinds, split into train and test sets,
and record the kinds in data/prepared/schema.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from contract import SCHEMA_FILE, TEST_CSV, TRAIN_CSV
from pipeline.data import (
    Cells,
    Table,
    read_cells,
    subset,
    target_values,
    typed_features,
    write_json,
    write_table,
)
from pipeline.errors import PipelineError
from pipeline.estimator import task_of
from pipeline.params import PrepareParams, load_params
from pipeline.schema import Column, Schema, infer_kinds


def drop_rows_without_target(cells: Cells, target: str, *, drop: bool, source: Path) -> Cells:
    """Refuse (naming the first line) or drop rows whose target is missing."""
    gaps = [i for i, v in enumerate(cells[target]) if v is None]
    if not gaps:
        return cells
    if not drop:
        raise PipelineError(
            f"{source}: line {gaps[0] + 2}, column {target!r}: missing target "
            f"({len(gaps)} row(s); prepare.drop_missing_target: true drops them)"
        )
    keep = [i for i in range(len(cells[target])) if i not in set(gaps)]
    return {name: [values[i] for i in keep] for name, values in cells.items()}


def load_raw(path: Path, params: PrepareParams, task: str) -> tuple[Table, dict[str, str]]:
    """The raw CSV as a typed table, and the kind of each feature column."""
    header, cells = read_cells(path, missing_values=params.missing_values)
    if params.target not in header:
        raise PipelineError(f"{path}: no target column {params.target!r} (columns: {', '.join(header)})")
    features = [h for h in header if h != params.target]
    if not features:
        raise PipelineError(f"{path}: no feature columns besides target {params.target!r}")
    cells = drop_rows_without_target(cells, params.target, drop=params.drop_missing_target, source=path)
    if not cells[params.target]:
        raise PipelineError(f"{path}: no rows with a target value")
    kinds = infer_kinds(
        {name: cells[name] for name in features},
        overrides=params.column_kinds,
        max_categories=params.max_categories,
        source=path,
    )
    provisional = Schema(target=params.target, task=task, features=())
    y = target_values(cells[params.target], provisional, path)
    return Table(target=params.target, X=typed_features(cells, kinds), y=y), kinds


def split(table: Table, *, params: PrepareParams, stratify: bool) -> tuple[Table, Table]:
    """Seeded train/test split; stratified for classification so both sets see every class."""
    index = np.arange(len(table.y))
    if stratify:
        labels, counts = np.unique(table.y, return_counts=True)
        if len(labels) < 2:
            raise PipelineError(f"column {table.target!r}: needs at least 2 classes, found {len(labels)}")
        if counts.min() < 2:
            rare = labels[counts.argmin()]
            raise PipelineError(f"column {table.target!r}: class {rare!r} has a single row, cannot stratify")
    try:
        train_idx, test_idx = train_test_split(
            index,
            test_size=params.test_size,
            random_state=params.seed,
            stratify=table.y if stratify else None,
        )
    except ValueError as exc:  # e.g. test_size leaves fewer test rows than classes
        raise PipelineError(f"prepare.test_size={params.test_size}: {exc}") from None
    return subset(table, np.sort(train_idx)), subset(table, np.sort(test_idx))


def build_schema(full: Table, train: Table, kinds: dict[str, str], task: str) -> Schema:
    """Categories are the levels of the training split (what the encoder learns); `missing`
    says whether the raw data had gaps in the column at all."""
    columns = []
    for name, kind in kinds.items():
        cats = None
        if kind == "categorical":
            cats = tuple(sorted({str(v) for v in train.X[name].tolist() if v is not None}))
        columns.append(Column(name, kind, cats, bool(full.X[name].isna().any())))
    return Schema(target=full.target, task=task, features=tuple(columns))


def main() -> None:
    params = load_params()
    raw = Path(params.prepare.raw_data)
    task = task_of(params.train.estimator.class_)
    table, kinds = load_raw(raw, params.prepare, task)
    try:
        train, test = split(table, params=params.prepare, stratify=task == "classification")
    except PipelineError as exc:
        raise PipelineError(f"{raw}: {exc}") from None
    schema = build_schema(table, train, kinds, task)
    write_table(TRAIN_CSV, train)
    write_table(TEST_CSV, test)
    write_json(SCHEMA_FILE, schema.to_json())
