"""Column kinds: inferred from the raw data by `prepare`, written to data/prepared/schema.json,
and read back by every later stage (the format and its type: `contract.schema.Schema`)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np

from contract import MISSING_STRING, PARAMS_FILE
from contract.dates import date_parts, part_names
from contract.schema import Schema
from pipeline.cells import RawColumn, numbers_of
from pipeline.errors import PipelineError


def read_schema(path: Path) -> Schema:
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path}: not valid JSON: {exc}") from None
    return Schema.from_json(doc, path)


def _as_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value


# A column whose present cells are at least this share numbers, with at most MAX_ODD_TOKENS
# distinct other values, is numbers with a few missing-value markers, not a category.
MOSTLY_NUMERIC = 0.8
MAX_ODD_TOKENS = 5


def _cells_of(items: Sequence[tuple[int, str]], limit: int = 3) -> str:
    shown = [f"{v!r} (line {i + 2})" for i, v in items[:limit]]
    return ", ".join(shown) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _first(column: RawColumn, values: Collection[str]) -> tuple[int, str]:
    """The first cell (row, text) of a text column whose value is one of `values`."""
    assert column.text is not None
    return next((i, v) for i, v in enumerate(column.text.tolist()) if v is not None and v in values)


def _numeric_kind(name: str, column: RawColumn, distinct_text: Collection[str], source: Path) -> str:
    """Why `name` is numeric, or an error naming its first non-finite cell. `distinct_text`: the
    column's distinct present cells when it was read as text (each is a number, maybe not finite)."""
    present = ~column.gaps
    not_finite = {v for v in distinct_text if not math.isfinite(float(v))}
    if not_finite:
        i, v = _first(column, not_finite)
        raise PipelineError(f"{source}: line {i + 2}, column {name!r}: {v!r} is not a finite number")
    values = numbers_of(column)[present]
    distinct = len(np.unique(values))
    if distinct == len(values) and distinct > MAX_ODD_TOKENS and bool(np.all(values == np.floor(values))):
        return (
            f"numeric: every value a number; all {distinct} distinct whole numbers "
            f"(an ID? prepare.drop_columns leaves it out)"
        )
    return f"numeric: every value a number ({distinct} distinct)"


def infer_kinds(
    columns: Mapping[str, RawColumn],
    *,
    overrides: Mapping[str, str],
    max_categories: int,
    source: Path,
    reasons: dict[str, str] | None = None,
) -> dict[str, str]:
    """name -> "numeric" | "categorical" | "date": numeric when every present value parses as a
    finite number, date when every one is an ISO 8601 date (contract.dates), else categorical.
    `reasons`, if given, receives each column's kind and why (the stage summary prints them).
    A column overridden as categorical must have been read as text (see pipeline.data.read_cells).

    Refuses (naming the column and, for a value, its line) an entirely empty column, a numeric
    override on text, a date override on a value that is not one, a non-finite number, a column of
    numbers or of dates with a few other tokens (listing them: missing-value markers, most likely),
    a categorical column over `max_categories` levels, and a date whose part names are taken.
    """
    unknown = sorted(set(overrides) - set(columns))
    if unknown:
        raise PipelineError(
            f"{PARAMS_FILE}: prepare.column_kinds: no column {unknown[0]!r} in {source} "
            f"(features: {', '.join(columns)})"
        )
    kinds: dict[str, str] = {}
    why: dict[str, str] = {} if reasons is None else reasons
    for name, column in columns.items():
        present = ~column.gaps
        n_present = int(present.sum())
        if not n_present:
            raise PipelineError(
                f"{source}: column {name!r} is entirely empty (prepare.drop_columns leaves it out)"
            )
        override = overrides.get(name)
        # Each distinct value is parsed once: a category's million cells are a few levels.
        counts: Counter[str] = Counter() if column.text is None else Counter(column.text[present].tolist())
        tokens = sorted(v for v in counts if _as_number(v) is None)
        n_text = sum(counts[t] for t in tokens)
        dates = [t for t in tokens if date_parts(t) is not None] if override in (None, "date") else []
        kind = override or (
            "numeric" if not tokens else "date" if len(dates) == len(tokens) else "categorical"
        )
        if kind == "date":
            not_dates = sorted(set(counts) - set(dates))
            if not_dates:
                i, v = _first(column, set(not_dates))
                raise PipelineError(
                    f"{source}: line {i + 2}, column {name!r}: {v!r} is not an ISO 8601 date "
                    "such as 2024-03-01 or 2024-03-01T13:45:00Z (prepare.column_kinds says date)"
                )
            i, v = _first(column, set(dates))
            why[name] = (
                "date: set in prepare.column_kinds"
                if override
                else f"date: every value ISO 8601, such as {v!r}"
            ) + f"; the model takes {', '.join(part_names(name))}"
        elif kind == "numeric":
            if tokens:
                i, v = _first(column, set(tokens))
                raise PipelineError(
                    f"{source}: line {i + 2}, column {name!r}: {v!r} is not a number "
                    f"(prepare.column_kinds says numeric)"
                )
            why[name] = _numeric_kind(name, column, counts.keys(), source)
            if override:
                why[name] = "numeric: set in prepare.column_kinds"
        else:
            assert column.text is not None, f"{name}: a categorical override is read as text"
            if (
                not override
                and n_text < n_present
                and len(tokens) <= MAX_ODD_TOKENS
                and (n_present - n_text >= MOSTLY_NUMERIC * n_present)
            ):
                raise PipelineError(
                    f"{source}: column {name!r}: numbers except {n_text} cell(s) holding "
                    f"{', '.join(map(repr, tokens))} (first: {_cells_of([_first(column, set(tokens))], 1)}): "
                    f'if they mean "no value", add them to prepare.missing_values; if the column is a '
                    f"category, set prepare.column_kinds: {{{name}: categorical}}"
                )
            n_dates = sum(counts[t] for t in dates)
            if not override and n_dates and n_dates >= MOSTLY_NUMERIC * n_present:
                odd = sorted(set(tokens) - set(dates))
                if len(odd) <= MAX_ODD_TOKENS:
                    raise PipelineError(
                        f"{source}: column {name!r}: ISO 8601 dates except "
                        f"{n_present - n_dates} cell(s) holding {', '.join(map(repr, odd))} "
                        f"(first: {_cells_of([_first(column, set(odd))], 1)}): if they mean "
                        f'"no value", add them to prepare.missing_values; if the column is a '
                        f"category, set prepare.column_kinds: {{{name}: categorical}}"
                    )
            if MISSING_STRING in counts:
                raise PipelineError(
                    f"{source}: column {name!r}: the value {MISSING_STRING!r} is reserved for missing values"
                )
            if len(counts) > max_categories:
                raise PipelineError(
                    f"{source}: column {name!r} has {len(counts)} distinct values, over "
                    f"prepare.max_categories={max_categories} (an ID or free text? prepare.drop_columns: "
                    f"[{name}] leaves it out; a category with that many levels: raise the limit)"
                )
            if override:
                reason = "categorical: set in prepare.column_kinds"
            else:
                i, v = _first(column, set(tokens))
                reason = f"categorical: text such as {v!r} (line {i + 2})"
            why[name] = reason + f", {len(counts)} levels"
        kinds[name] = kind
    for name in (n for n, kind in kinds.items() if kind == "date"):
        taken = [part for part in part_names(name) if part in columns]
        if taken:
            raise PipelineError(
                f"{source}: column {name!r} is a date, whose part {taken[0]!r} is also a column's "
                "name: rename that column, or leave it out with prepare.drop_columns"
            )
    return kinds
