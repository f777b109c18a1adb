"""Stage `prepare`: read the raw CSV, infer the column kinds, split into train and test sets,
and record the kinds in data/prepared/schema.json."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.model_selection import train_test_split

from contract import PARAMS_FILE, SCHEMA_FILE, TEST_CSV, TRAIN_CSV
from contract.features import Feature
from contract.schema import Schema
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
from pipeline.params import Params, PrepareParams, load_params
from pipeline.schema import infer_kinds

# A classifier's target that is all numbers with a fraction, or with more distinct values than
# this, is a quantity to predict with a regressor, not a set of classes.
MAX_NUMERIC_CLASSES = 20


def drop_rows_without_target(
    cells: Cells, target: str, *, drop: bool, source: Path, notes: list[str] | None = None
) -> Cells:
    """Refuse (naming the first line) or drop rows whose target is missing."""
    gaps = cells[target].gaps
    if not gaps.any():
        return cells
    count = int(gaps.sum())
    if not drop:
        raise PipelineError(
            f"{source}: line {int(np.flatnonzero(gaps)[0]) + 2}, column {target!r}: missing target "
            f"({count} row(s); prepare.drop_missing_target: true drops them)"
        )
    if notes is not None:
        notes.append(f"dropped {count} row(s) without a target (prepare.drop_missing_target)")
    keep = np.flatnonzero(~gaps)
    return {name: column.take(keep) for name, column in cells.items()}


def feature_columns(header: list[str], params: PrepareParams, path: Path) -> list[str]:
    """The header without the target and prepare.drop_columns (each of which must exist)."""
    if params.target not in header:
        hint = ""
        if len(header) == 1:
            hint = "; the header is one column: is the delimiter , ; tab or |? prepare.delimiter sets it"
        raise PipelineError(
            f"{path}: no target column {params.target!r} (columns: {', '.join(header)}){hint}"
        )
    for name in params.drop_columns:
        if name not in header:
            raise PipelineError(
                f"{PARAMS_FILE}: prepare.drop_columns: no column {name!r} in {path} "
                f"(columns: {', '.join(header)})"
            )
        if name == params.target:
            raise PipelineError(f"{PARAMS_FILE}: prepare.drop_columns: {name!r} is the target")
    features = [h for h in header if h != params.target and h not in params.drop_columns]
    if not features:
        raise PipelineError(f"{path}: no feature columns besides target {params.target!r}")
    return features


def check_classes(y: npt.NDArray[Any], target: str, path: Path, *, max_categories: int) -> None:
    """A classifier's labels that look like a continuous quantity are refused: use a regressor."""
    labels = sorted({str(v) for v in y.tolist()})
    numbers = [float(v) for v in labels if _is_number(v)]
    if len(numbers) != len(labels):
        return
    if any(not n.is_integer() for n in numbers) or len(labels) > min(MAX_NUMERIC_CLASSES, max_categories):
        raise PipelineError(
            f"{path}: column {target!r}: {len(labels)} distinct numeric values (e.g. {labels[0]}, "
            f"{labels[-1]}) look continuous: use a regressor (train.estimator.class, e.g. "
            "sklearn.ensemble.HistGradientBoostingRegressor), not a classifier"
        )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_raw(
    path: Path, params: PrepareParams, task: str, notes: list[str] | None = None
) -> tuple[Table, dict[str, str]]:
    """The raw CSV as a typed table, and the kind of each feature column. `notes`, if given,
    receives the stage summary's lines (dialect, rows, each column's kind and why)."""
    # The target's labels and the columns set categorical are kept as text, as written.
    as_text = [params.target, *(n for n, kind in params.column_kinds.items() if kind != "numeric")]
    header, cells, dialect = read_cells(
        path,
        missing_values=params.missing_values,
        encoding=params.encoding,
        delimiter=params.delimiter,
        decimal=params.decimal,
        keep_text=as_text,
    )
    features = feature_columns(header, params, path)
    rows = len(cells[params.target])
    if notes is not None:
        notes.append(f"read {path}: {rows} rows, {len(header)} columns; {dialect.describe()}")
        if params.drop_columns:
            notes.append(f"left out (prepare.drop_columns): {', '.join(params.drop_columns)}")
    cells = drop_rows_without_target(
        cells, params.target, drop=params.drop_missing_target, source=path, notes=notes
    )
    if not len(cells[params.target]):
        raise PipelineError(f"{path}: no rows with a target value")
    reasons: dict[str, str] = {}
    kinds = infer_kinds(
        {name: cells[name] for name in features},
        overrides=params.column_kinds,
        max_categories=params.max_categories,
        source=path,
        reasons=reasons,
    )
    provisional = Schema(target=params.target, task=task, features=())
    y = target_values(cells[params.target], provisional, path)
    if task == "classification":
        check_classes(y, params.target, path, max_categories=params.max_categories)
    if notes is not None:
        notes.append(f"kept {len(y)} rows")
        notes.extend(f"  {name}: {reasons[name]}" for name in features)
    return Table(target=params.target, X=typed_features(cells, kinds), y=y), kinds


def _too_small(labels: Sequence[str], counts: Sequence[int], target: str) -> PipelineError:
    shown = ", ".join(
        f"{label!r} ({count} row{'s' if count != 1 else ''})"
        for label, count in zip(labels, counts, strict=True)
    )
    return PipelineError(
        f"column {target!r}: class {shown} too small to reach both the training and the test split: "
        "add rows, merge the class into another, or leave its rows out of the CSV"
    )


def split(table: Table, *, params: PrepareParams, stratify: bool) -> tuple[Table, Table]:
    """Seeded train/test split; stratified for classification so both sets see every class
    (a class too small for that is refused, naming it and its count)."""
    index = np.arange(len(table.y))
    if stratify:
        labels, counts = np.unique(table.y, return_counts=True)
        names = [str(v) for v in labels.tolist()]
        if len(labels) < 2:
            raise PipelineError(f"column {table.target!r}: needs at least 2 classes, found {len(labels)}")
        small = [i for i, c in enumerate(counts.tolist()) if c < 2]
        if small:
            raise _too_small([names[i] for i in small], [int(counts[i]) for i in small], table.target)
    try:
        train_idx, test_idx = train_test_split(
            index,
            test_size=params.test_size,
            random_state=params.seed,
            stratify=table.y if stratify else None,
        )
    except ValueError as exc:  # e.g. test_size leaves fewer test rows than classes
        raise PipelineError(f"prepare.test_size={params.test_size}: {exc}") from None
    if stratify:
        absent = [
            i
            for i, label in enumerate(labels.tolist())
            if not (np.any(table.y[train_idx] == label) and np.any(table.y[test_idx] == label))
        ]
        if absent:
            raise _too_small([names[i] for i in absent], [int(counts[i]) for i in absent], table.target)
    return subset(table, np.sort(train_idx)), subset(table, np.sort(test_idx))


def check_positive_class(params: Params, table: Table) -> None:
    """evaluate.positive_class must be one of the target's labels: refused now, before training."""
    positive = params.evaluate.positive_class
    if positive is None:
        return
    labels = sorted({str(v) for v in table.y.tolist()})
    if positive not in labels:
        raise PipelineError(
            f"{PARAMS_FILE}: evaluate.positive_class: {positive!r} is not a label of column "
            f"{table.target!r} in {params.prepare.raw_data} ({', '.join(labels)}; null: the last)"
        )


def class_counts(train: Table, test: Table) -> str:
    labels, counts = np.unique(np.concatenate([train.y, test.y]), return_counts=True)
    return ", ".join(
        f"{label} {count}" for label, count in zip(labels.tolist(), counts.tolist(), strict=True)
    )


def build_schema(full: Table, train: Table, kinds: dict[str, str], task: str) -> Schema:
    """Categories are the levels of the training split (what the encoder learns); `missing`
    says whether the raw data had gaps in the column at all."""
    columns = []
    for name, kind in kinds.items():
        cats = None
        if kind == "categorical":
            cats = tuple(sorted({str(v) for v in train.X[name].tolist() if v is not None}))
        columns.append(Feature(name, kind, cats, bool(full.X[name].isna().any())))
    return Schema(target=full.target, task=task, features=tuple(columns))


def main() -> None:
    params = load_params()
    raw = Path(params.prepare.raw_data)
    task = task_of(params.train.estimator.class_)
    notes: list[str] = []
    table, kinds = load_raw(raw, params.prepare, task, notes)
    try:
        train, test = split(table, params=params.prepare, stratify=task == "classification")
    except PipelineError as exc:
        raise PipelineError(f"{raw}: {exc}") from None
    if task == "classification":
        check_positive_class(params, table)
    schema = build_schema(table, train, kinds, task)
    if task == "classification":
        notes.append(f"target {table.target!r} classes: {class_counts(train, test)}")
    else:
        notes.append(
            f"target {table.target!r}: numeric, {float(table.y.min()):g} to {float(table.y.max()):g}"
        )
    notes.append(f"split (seed {params.prepare.seed}): {len(train.y)} training rows, {len(test.y)} test rows")
    for line in notes:
        print(f"prepare: {line}")
    write_table(TRAIN_CSV, train)
    write_table(TEST_CSV, test)
    write_json(SCHEMA_FILE, schema.to_json())
