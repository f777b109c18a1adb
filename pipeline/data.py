"""Reading mixed-type CSVs (pandas) into typed tables, and atomic writing of the stages' outputs."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the dev lock

from contract.schema import Schema
from pipeline.cells import RawColumn, numbers_of
from pipeline.dialect import DECIMAL_COMMA, Dialect, read_text
from pipeline.errors import PipelineError

# Rows per pandas chunk: each chunk's cells are Python strings only until its columns are stored
# compactly, so the whole file's cells never exist as strings at once.
CHUNK_ROWS = 100_000
WRITE_ROWS = 100_000  # rows of cells formatted at a time by write_table


Cells = dict[str, RawColumn]


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


def _check_rows(data: bytes, dialect: Dialect, path: Path) -> list[str]:
    """The header; a row whose width differs from it is refused naming its line (pandas would read
    a long row's extra cells as an index and pad a short one). Streams: no copy of the text."""
    rows = csv.reader(
        io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline=""), delimiter=dialect.delimiter
    )
    try:
        header = next(rows, None)
        if not header:
            raise PipelineError(f"{path}: empty file, expected a header row")
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
    return header


def _finite_numbers(
    cells: npt.NDArray[np.object_], gaps: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64] | None:
    """The cells as float64 (NaN at a gap) when every present one is a finite number, else None.
    numpy's object-to-float cast calls float() on each cell, so it reads what float() reads."""
    out = np.full(len(cells), np.nan)
    try:
        present = cells[~gaps].astype(np.float64)
    except (ValueError, TypeError):
        return None
    if not np.isfinite(present).all():
        return None  # kept as text, so the error can quote the cell
    out[~gaps] = present
    return out


def _shared(cells: npt.NDArray[np.object_], pool: dict[str, str]) -> npt.NDArray[np.object_]:
    """The cells with each repeated value one string (a category's levels, not a string per row)."""
    out = np.empty(len(cells), dtype=object)
    out[:] = [None if v is None else pool.setdefault(v, v) for v in cells.tolist()]
    return out


def _decimal_points(cells: npt.NDArray[np.object_]) -> None:
    for i, v in enumerate(cells.tolist()):
        if v is not None and DECIMAL_COMMA.match(v):
            cells[i] = v.replace(",", ".")


def read_cells(
    path: Path,
    *,
    missing_values: Sequence[str],
    encoding: str | None = "utf-8",
    delimiter: str | None = ",",
    decimal: str | None = ".",
    keep_text: Collection[str] = (),
) -> tuple[list[str], Cells, Dialect]:
    """Every column (see RawColumn; the columns in `keep_text` always as text), and the file's
    dialect (None: detect it, see pipeline.dialect); one-line errors name the file, and the line
    where there is one.

    pandas splits the cells but converts nothing: numbers are parsed with float(), which rounds
    correctly (pandas' fast float parser does not always), so the CSV round-trips bit for bit.
    A decimal comma becomes a point here, in the cells that are numbers written with one.
    """
    text, dialect = read_text(path, encoding=encoding, delimiter=delimiter, decimal=decimal)
    data = text.encode("utf-8")  # pandas' C parser reads bytes; a StringIO would hold 4 bytes a char
    del text
    header = _check_rows(data, dialect, path)

    def read(**kwargs: Any) -> Any:
        return pd.read_csv(
            io.BytesIO(data),
            sep=dialect.delimiter,
            header=0,
            names=header,
            dtype=str,
            keep_default_na=False,
            na_values=list(missing_values),
            skip_blank_lines=True,
            index_col=False,
            encoding="utf-8",
            **kwargs,
        )

    def column_cells(series: Any) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.bool_]]:
        gaps = series.isna().to_numpy()
        cells = series.to_numpy(dtype=object, na_value=None)
        if dialect.decimal == ",":
            _decimal_points(cells)
        return cells, gaps

    numbers: dict[str, list[npt.NDArray[np.float64]]] = {name: [] for name in header}
    texts: dict[str, list[npt.NDArray[np.object_]]] = {name: [] for name in header}
    gaps: dict[str, list[npt.NDArray[np.bool_]]] = {name: [] for name in header}
    as_text = set(keep_text)
    reread: set[str] = set()  # read as numbers at first, then a chunk held text
    pools: dict[str, dict[str, str]] = {name: {} for name in header}
    try:
        for chunk in read(chunksize=CHUNK_ROWS):
            for name in header:
                cells, gap = column_cells(chunk[name])
                gaps[name].append(gap)
                if name not in as_text:
                    values = _finite_numbers(cells, gap)
                    if values is not None:
                        numbers[name].append(values)
                        continue
                    as_text.add(name)
                    if numbers[name]:
                        reread.add(name)
                if name not in reread:
                    texts[name].append(_shared(cells, pools[name]))
        for name in sorted(reread):  # rare: one column read again, as text alone
            cells, _ = column_cells(read(usecols=[name])[name])
            texts[name] = [_shared(cells, pools[name])]
    except (pd.errors.ParserError, ValueError) as exc:
        raise PipelineError(f"{path}: {str(exc).strip().splitlines()[0]}") from None
    if not gaps[header[0]] or not sum(len(g) for g in gaps[header[0]]):
        raise PipelineError(f"{path}: no data rows")
    columns = {
        name: RawColumn(
            np.concatenate(gaps[name]),
            None if name in as_text else np.concatenate(numbers[name]),
            np.concatenate(texts[name]) if name in as_text else None,
        )
        for name in header
    }
    return header, columns, dialect


def typed_features(cells: Mapping[str, RawColumn], kinds: Mapping[str, str]) -> pd.DataFrame:
    """Numeric columns -> float64 (NaN for a gap), categorical -> object (str or None)."""
    data: dict[str, pd.Series[Any]] = {}
    for name, kind in kinds.items():
        column = cells[name]
        if kind == "numeric":
            data[name] = pd.Series(numbers_of(column), dtype=np.float64, copy=False)
        else:
            assert column.text is not None, f"{name}: a categorical column is read as text"
            data[name] = pd.Series(column.text, dtype=object, copy=False)
    return pd.DataFrame(data, copy=False)


def read_table(path: Path, schema: Schema) -> Table:
    """Read a prepared CSV (written by write_table) with the column kinds of `schema`."""
    text_columns = [schema.target, *(c.name for c in schema.features if c.kind != "numeric")]
    header, cells, _ = read_cells(path, missing_values=[""], keep_text=text_columns)
    expected = [*schema.names, schema.target]
    if header != expected:
        raise PipelineError(f"{path}: columns {header} differ from the schema's {expected}")
    X = typed_features(cells, {c.name: c.kind for c in schema.features})
    return Table(target=schema.target, X=X, y=target_values(cells[schema.target], schema, path))


def target_values(column: RawColumn, schema: Schema, path: Path) -> npt.NDArray[Any]:
    """Labels as str (classification) or float64 values (regression); every row must have one."""
    if column.gaps.any():
        i = int(np.flatnonzero(column.gaps)[0])
        raise PipelineError(f"{path}: line {i + 2}, column {schema.target!r}: missing target")
    assert column.text is not None, "the target is read as text"
    values = column.text.tolist()
    if schema.task == "classification":
        return np.asarray([v.strip() for v in values], dtype=np.str_)
    try:
        out = column.text.astype(np.float64)
    except ValueError:
        out = None
    if out is not None and np.isfinite(out).all():
        return out
    for i, v in enumerate(values):  # name the first cell that is not a finite number
        try:
            number = float(v)
        except ValueError:
            raise PipelineError(
                f"{path}: line {i + 2}, column {schema.target!r}: {v!r} is not a number "
                "(a regressor needs a numeric target)"
            ) from None
        if not np.isfinite(number):
            raise PipelineError(f"{path}: line {i + 2}, column {schema.target!r}: {v!r} is not finite")
    raise AssertionError("unreachable: a cell failed the cast")


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
    """Write a Table as CSV: floats via repr(), an empty cell for a gap (WRITE_ROWS rows of cells
    formatted at a time, so a large table's text never exists whole)."""
    with atomic_write(path) as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([*table.features, table.target])
        for start in range(0, len(table.y), WRITE_ROWS):
            rows = slice(start, start + WRITE_ROWS)
            columns = [_column_cells(table.X[name].to_numpy()[rows]) for name in table.features]
            writer.writerows(zip(*columns, _column_cells(table.y[rows]), strict=True))
