"""Stage `prepare`: validate the raw CSV and split it into train and test sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from pipeline.data import Table, read_table, subset, write_table
from pipeline.errors import PipelineError
from pipeline.params import PrepareParams, load_params
from pipeline.paths import TEST_CSV, TRAIN_CSV


def split(table: Table, *, params: PrepareParams) -> tuple[Table, Table]:
    """Stratified, seeded train/test split (stratified so both sets see every class)."""
    labels, counts = np.unique(table.y, return_counts=True)
    if len(labels) < 2:
        raise PipelineError(f"column {table.target!r}: needs at least 2 classes, found {len(labels)}")
    if counts.min() < 2:
        rare = labels[counts.argmin()]
        raise PipelineError(f"column {table.target!r}: class {rare!r} has a single row, cannot stratify")
    index = np.arange(len(table.y))
    try:
        train_idx, test_idx = train_test_split(
            index, test_size=params.test_size, random_state=params.seed, stratify=table.y
        )
    except ValueError as exc:  # e.g. test_size leaves fewer test rows than classes
        raise PipelineError(f"prepare.test_size={params.test_size}: {exc}") from None
    return subset(table, np.sort(train_idx)), subset(table, np.sort(test_idx))


def main() -> None:
    params = load_params().prepare
    raw = Path(params.raw_data)
    table = read_table(raw, params.target)
    try:
        train, test = split(table, params=params)
    except PipelineError as exc:
        raise PipelineError(f"{raw}: {exc}") from None
    write_table(TRAIN_CSV, train)
    write_table(TEST_CSV, test)
