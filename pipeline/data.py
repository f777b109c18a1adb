"""Strict CSV reading and atomic writing of numeric feature tables."""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from pipeline.errors import PipelineError


@dataclass(frozen=True)
class Table:
    """Feature matrix (float64, columns in `features` order) and string labels."""

    features: tuple[str, ...]
    target: str
    X: npt.NDArray[np.float64]
    y: npt.NDArray[np.str_]


def read_table(path: Path, target: str) -> Table:
    """Read a CSV whose columns are numeric features plus the `target` label column."""
    try:
        fh = path.open(newline="")
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read: {exc.strerror}") from None
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise PipelineError(f"{path}: empty file, expected a header row")
        if target not in header:
            raise PipelineError(f"{path}: no target column {target!r} (columns: {', '.join(header)})")
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise PipelineError(f"{path}: duplicate column(s) {', '.join(map(repr, dupes))}")
        t = header.index(target)
        features = tuple(h for i, h in enumerate(header) if i != t)
        if not features:
            raise PipelineError(f"{path}: no feature columns besides target {target!r}")
        rows: list[list[float]] = []
        labels: list[str] = []
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise PipelineError(f"{path}: line {line_no}: {len(row)} fields, header has {len(header)}")
            label = row[t].strip()
            if not label:
                raise PipelineError(f"{path}: line {line_no}, column {target!r}: missing label")
            values = []
            for name, cell in zip(features, row[:t] + row[t + 1 :], strict=True):
                values.append(_parse_number(cell, path, line_no, name))
            rows.append(values)
            labels.append(label)
    if not rows:
        raise PipelineError(f"{path}: no data rows")
    X = np.asarray(rows, dtype=np.float64)
    return Table(features=features, target=target, X=X, y=np.asarray(labels, dtype=np.str_))


def _parse_number(cell: str, path: Path, line_no: int, column: str) -> float:
    text = cell.strip()
    where = f"{path}: line {line_no}, column {column!r}"
    if not text:
        raise PipelineError(f"{where}: missing value")
    try:
        value = float(text)
    except ValueError:
        raise PipelineError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise PipelineError(f"{where}: {text!r} is not a finite number")
    return value


@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO[str]]:
    """Write to a temp file beside `path` and rename it into place only on success,
    so a failed stage never leaves a half-written output for DVC to cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, newline="" if "b" not in mode else None) as fh:
            yield fh
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Deterministic, atomic JSON (floats via repr(), so they round-trip bit for bit)."""
    with atomic_write(path) as fh:
        json.dump(obj, fh, indent=2, allow_nan=False)
        fh.write("\n")


def write_table(path: Path, table: Table) -> None:
    """Write a Table as CSV; floats use repr() so they round-trip bit for bit."""
    with atomic_write(path) as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([*table.features, table.target])
        for row, label in zip(table.X.tolist(), table.y.tolist(), strict=True):
            writer.writerow([*(repr(v) for v in row), label])


def subset(table: Table, index: Sequence[int] | npt.NDArray[np.intp]) -> Table:
    """Rows `index` of a table."""
    idx = np.asarray(index)
    return Table(features=table.features, target=table.target, X=table.X[idx], y=table.y[idx])
