"""Reading mixed-type CSVs (pandas) into typed tables, and atomic writing of the stages' outputs."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the dev lock

from pipeline.dialect import DECIMAL_COMMA, Dialect, read_text
from pipeline.errors import PipelineError
from pipeline.schema import Schema

Cells = dict[str, list[str | None]]


@dataclass(frozen=True)
class Table:
    """Features (numeric columns float64 with NaN for a gap, categorical columns object: str or
    None) and the target (str labels for classification, float64 for regression)."""

    target: str
    X: pd.DataFrame
    y: npt.NDArray[Any]

    @property
    def features(self) -> list[str]:
        return [str(c) for c in self.X.columns]


def read_cells(
    path: Path,
    *,
    missing_values: Sequence[str],
    encoding: str | None = "utf-8",
    delimiter: str | None = ",",
    decimal: str | None = ".",
) -> tuple[list[str], Cells, Dialect]:
    """Every cell as text (None for a gap), column by column, and the file's dialect (None: detect
    it, see pipeline.dialect); one-line errors name the file, and the line where there is one.

    pandas reads, but converts nothing: numbers are parsed later with float(), which rounds
    correctly (pandas' fast float parser does not always), so the CSV round-trips bit for bit.
    A decimal comma becomes a point here, in the cells that are numbers written with one.
    """
    text, dialect = read_text(path, encoding=encoding, delimiter=delimiter, decimal=decimal)
    try:
        rows = csv.reader(io.StringIO(text, newline=""), delimiter=dialect.delimiter)
        header = next(rows, None)
        if not header:
            raise PipelineError(f"{path}: empty file, expected a header row")
        # pandas would read a long row's extra cells as an index and pad a short one.
        for row in rows:
            if row and len(row) != len(header):
                raise PipelineError(
                    f"{path}: line {rows.line_num}: {len(row)} fields, header has {len(header)} "
                    f"(read with {dialect.describe()}; prepare.delimiter sets the delimiter)"
                )
    except csv.Error as exc:
        raise PipelineError(f"{path}: line {rows.line_num}: not a readable CSV: {exc}") from None
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise PipelineError(f"{path}: duplicate column(s) {', '.join(map(repr, dupes))}")
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=dialect.delimiter,
            dtype=str,
            keep_default_na=False,
            na_values=list(missing_values),
            skip_blank_lines=True,
            index_col=False,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise PipelineError(f"{path}: {str(exc).strip().splitlines()[0]}") from None
    if frame.empty:
        raise PipelineError(f"{path}: no data rows")
    cells: Cells = {name: _text_or_none(frame[name]) for name in header}
    if dialect.decimal == ",":
        for values in cells.values():
            for i, v in enumerate(values):
                if v is not None and DECIMAL_COMMA.match(v):
                    values[i] = v.replace(",", ".")
    return header, cells, dialect


def _text_or_none(column: pd.Series[Any]) -> list[str | None]:
    """A column read as text, a gap as None (one vectorised NA mask, not a pd.isna per cell)."""
    gaps = column.isna().to_numpy().tolist()
    return [None if gap else str(v) for v, gap in zip(column.tolist(), gaps, strict=True)]


def typed_features(cells: Mapping[str, Sequence[str | None]], kinds: Mapping[str, str]) -> pd.DataFrame:
    """Numeric columns -> float64 (NaN for a gap), categorical -> object (str or None)."""
    data: dict[str, pd.Series[Any]] = {}
    for name, kind in kinds.items():
        values = cells[name]
        if kind == "numeric":
            data[name] = pd.Series([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        else:
            data[name] = pd.Series(list(values), dtype=object)
    return pd.DataFrame(data)


def read_table(path: Path, schema: Schema) -> Table:
    """Read a prepared CSV (written by write_table) with the column kinds of `schema`."""
    header, cells, _ = read_cells(path, missing_values=[""])
    expected = [*schema.names, schema.target]
    if header != expected:
        raise PipelineError(f"{path}: columns {header} differ from the schema's {expected}")
    X = typed_features(cells, {c.name: c.kind for c in schema.features})
    return Table(target=schema.target, X=X, y=target_values(cells[schema.target], schema, path))


def target_values(values: Sequence[str | None], schema: Schema, path: Path) -> npt.NDArray[Any]:
    """Labels as str (classification) or float64 values (regression); every row must have one."""
    for i, v in enumerate(values):
        if v is None:
            raise PipelineError(f"{path}: line {i + 2}, column {schema.target!r}: missing target")
    present = [v for v in values if v is not None]
    if schema.task == "classification":
        return np.asarray([v.strip() for v in present], dtype=np.str_)
    out = np.empty(len(present), dtype=np.float64)
    for i, v in enumerate(present):
        try:
            out[i] = float(v)
        except ValueError:
            raise PipelineError(
                f"{path}: line {i + 2}, column {schema.target!r}: {v!r} is not a number "
                "(a regressor needs a numeric target)"
            ) from None
        if not np.isfinite(out[i]):
            raise PipelineError(f"{path}: line {i + 2}, column {schema.target!r}: {v!r} is not finite")
    return out


def subset(table: Table, index: Sequence[int] | npt.NDArray[np.intp]) -> Table:
    """Rows `index` of a table (renumbered from 0)."""
    idx = np.asarray(index)
    return Table(target=table.target, X=table.X.iloc[idx].reset_index(drop=True), y=table.y[idx])


@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temp file beside `path` and rename it into place only on success,
    so a failed stage never leaves a half-written output for DVC to cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, newline="" if "b" not in mode else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())  # the bytes on disk before the rename that publishes them
        Path(tmp).replace(path)
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)  # and the rename itself
        finally:
            os.close(directory)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Deterministic, atomic JSON (floats via repr(), so they round-trip bit for bit)."""
    with atomic_write(path) as fh:
        json.dump(obj, fh, indent=2, allow_nan=False)
        fh.write("\n")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""  # a gap: the one missing-value marker of the prepared CSVs
    if isinstance(value, float):
        return repr(value)  # round-trips bit for bit
    return str(value)


def _column_cells(values: pd.Series[Any] | npt.NDArray[Any]) -> list[str]:
    """_cell over a whole column; a float64 column without the per-cell type checks."""
    if values.dtype == np.float64:
        return ["" if v != v else repr(v) for v in values.tolist()]
    return [_cell(v) for v in values.tolist()]


def write_table(path: Path, table: Table) -> None:
    """Write a Table as CSV: floats via repr(), an empty cell for a gap."""
    with atomic_write(path) as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([*table.features, table.target])
        columns = [_column_cells(table.X[name]) for name in table.features]
        writer.writerows(zip(*columns, _column_cells(table.y), strict=True))
