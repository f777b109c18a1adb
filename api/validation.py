"""Turns a POST /predict body into a `Batch` (api.batch), or a ClientError naming each bad row and
field. Reading the body is api.body's job, counting its bytes before the parse api.tokens'.

Numeric columns take JSON numbers, categorical columns take strings, and any column takes `null`
for a missing value (the model's preprocessing imputes every column). Unknown categories are
accepted: a value the training data never had is a data-quality signal, counted per column, not
a client error.

Two paths give the same answer. The fast path handles well-formed input with a few C-level passes
(orjson, itemgetter, a set of value types, numpy) and returns None at the first doubt; the exact
path then walks the document value by value and says precisely what is wrong. Keeping the fast
path free of error reporting is what makes it fast.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import chain, islice
from operator import itemgetter
from typing import Any

import numpy as np

from api.batch import Batch
from api.body import json_type, load_json
from api.dense_json import instance_rows
from api.errors import MAX_REPORTED_ERRORS, ClientError, problem
from api.tokens import NUMPY_COUNT_BYTES, BodyTokens, count, letters
from contract.dates import DATE_PARTS, parts_rows
from contract.features import Feature

# Feature values are measurements; magnitudes past this are refused by name rather than left to
# overflow a model's arithmetic into inf/NaN.
MAX_ABS_VALUE = 1e100
# A graph that takes float32 inputs: anything larger would become inf when cast.
FLOAT32_MAX_VALUE = float(np.finfo(np.float32).max)
_NONE = type(None)
_NUMERIC_TYPES = frozenset({int, float, _NONE})
_CATEGORICAL_TYPES = frozenset({str, _NONE})

Row = tuple[Any, ...]
# Keys beyond what a body's objects can validly hold that are still parsed (and named when refused).
_KEY_SLACK = 1024
# Fewer strings than this cost little to parse: such a body's keys are not counted (a 1,000-row
# named batch has 30,000).
_KEYS_COUNTED_FROM = 32_768


_INSTANCES_LETTERS = letters("instances")


def _numeric_problem(value: Any, max_abs: float) -> str | None:
    """Why a parsed JSON value is not acceptable in a numeric column, or None if it is."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number or null, got {json_type(value)}"
    try:
        as_float = float(value)
    except OverflowError:
        return "is out of range for a 64-bit float"
    if not math.isfinite(as_float):
        return f"must be a finite number, got {as_float}"
    if abs(as_float) > max_abs:
        return f"must be between {-max_abs:g} and {max_abs:g}"
    return None


def _categorical_problem(value: Any, what: str = "a category") -> str | None:
    if value is None or isinstance(value, str):
        return None
    return f"must be a string ({what}) or null, got {json_type(value)}"


DATE_PROBLEM = "must be an ISO 8601 date such as 2024-03-01 or 2024-03-01T13:45:00Z, or null"


def date_matrix(column: Sequence[str | None]) -> tuple[np.ndarray, list[int]]:
    """A date column's parts (contract.dates) as a (rows, parts) float64 matrix, NaN for null, and
    the rows whose value is not a date. Training computes the same parts with the same function."""
    rows, bad = parts_rows(column)
    return np.array(rows, dtype=np.float64).reshape(-1, len(DATE_PARTS)), bad


def _getter(keys: Sequence[Any]) -> Callable[[Any], Row]:
    """itemgetter that always returns a tuple (with one key it returns the bare value)."""
    if not keys:
        return lambda row: ()
    get = itemgetter(*keys)
    if len(keys) == 1:
        return lambda row: (get(row),)
    return get


class InstanceParser:
    """Parses and validates `{"instances": [...]}` bodies against the model's features."""

    def __init__(self, features: Sequence[Feature], max_rows: int, max_abs: float = MAX_ABS_VALUE):
        self.features = tuple(features)
        self.max_abs = max_abs  # bound on |numeric value|: what the model's input type can hold
        self.names = tuple(f.name for f in self.features)
        self.n_features = len(self.names)
        self.max_rows = max_rows
        self._positions = {name: i for i, name in enumerate(self.names)}
        numeric = [i for i, f in enumerate(self.features) if f.numeric]
        categorical = [i for i, f in enumerate(self.features) if not f.numeric]
        self.numeric_names = tuple(self.names[i] for i in numeric)
        self.categorical_names = tuple(self.names[i] for i in categorical)
        self._known = [frozenset(self.features[i].categories or ()) for i in categorical]
        # Dates travel as strings with the categories, and become numbers in _batch.
        self._dates = [
            (k, self.names[i]) for k, i in enumerate(categorical) if self.features[i].kind == "date"
        ]
        self._date_names = frozenset(name for _, name in self._dates)
        self._what = [
            "an ISO 8601 date" if self.features[i].kind == "date" else "a category" for i in categorical
        ]
        # Where each value of a row goes: (is numeric, index within its kind), by feature position.
        self._slot = {i: (True, k) for k, i in enumerate(numeric)} | {
            i: (False, k) for k, i in enumerate(categorical)
        }
        self._name_letters = letters("".join(self.names))  # in the keys of one named row
        self._numeric_named = _getter(self.numeric_names)
        self._categorical_named = _getter(self.categorical_names)
        self._numeric_positional = _getter(numeric)
        self._categorical_positional = _getter(categorical)

    def parse(self, body: bytes) -> Batch:
        """Return the validated Batch or raise ClientError (400 malformed, 422 invalid)."""
        tokens = BodyTokens.of(body)
        self._refuse_excess(body, tokens)
        batch = self.dense(body, tokens)
        if batch is not None:
            return batch
        doc, strict = load_json(body)
        batch = self._fast(doc, tokens) if strict else None
        # The exact path reuses the parsed document: a second parse would double a bad body's cost.
        return batch if batch is not None else self._exact(doc)

    def dense(self, body: bytes, tokens: BodyTokens) -> Batch | None:
        """Positional rows of numbers, parsed straight to float64 (api.dense_json); None: any other
        body. Such a body has one string, "instances": named rows (30,000 keys) are not parsed twice."""
        if self.categorical_names or tokens.quotes != 2:
            return None
        numeric = instance_rows(body, self.n_features, self.max_rows)
        if numeric is None or (np.abs(numeric) > self.max_abs).any():  # out of bounds: named by _exact
            return None
        return self._batch(len(numeric), numeric, [])

    def _refuse_excess(self, body: bytes, tokens: BodyTokens) -> None:
        """Refuse, before parsing, a body with more JSON strings or values than any valid batch holds.

        Parsing builds an object per key and per value, so a body within the byte limit could still
        cost many times its size (one row of a million unknown keys, a million zeros). A valid body
        has at most "instances" plus, per row, one key per feature and one value per categorical
        feature as strings, and the object, the array, a container per row and its values as values.
        Values get twice that: a comma inside a string counts as one, and a body a little past the
        row limit is still parsed, so its refusal can name the rows.
        """
        max_strings = 1 + self.max_rows * (self.n_features + len(self.categorical_names))
        message = tokens.excess(body, max_strings, 2 * (2 + self.max_rows * (1 + self.n_features)))
        if message:
            message += f" {self.max_rows} rows of {self.n_features} features"
            raise ClientError(422, "too_many_fields", message, [problem(None, None, message)])
        values = self.max_rows * len(self.categorical_names)
        if tokens.strings_at_least > values + _KEYS_COUNTED_FROM:
            # Its other strings are keys: each followed by a colon, at most one per feature in each
            # object (the body's own and one per row); colons and braces in strings only add. A
            # few more are parsed, so a row with some unknown keys is refused naming them.
            array = np.frombuffer(body, dtype=np.uint8) if len(body) > NUMPY_COUNT_BYTES else None
            objects = count(body, array, "{")
            keys = min(count(body, array, ":"), 1 + max(0, objects - 1) * self.n_features)
            if tokens.strings_at_least > keys + values + _KEY_SLACK:
                message = (
                    f"body has at least {tokens.strings_at_least} JSON strings; its {objects} objects "
                    f"hold at most {keys} keys of {self.n_features} features, and categorical values "
                    f"at most {values}"
                )
                raise ClientError(422, "too_many_fields", message, [problem(None, None, message)])

    def _fast(self, doc: Any, tokens: BodyTokens) -> Batch | None:
        """Validate well-formed input cheaply; None means "not sure", never "invalid"."""
        if type(doc) is not dict or len(doc) != 1:
            return None
        instances = doc.get("instances")
        if type(instances) is not list or not 0 < len(instances) <= self.max_rows:
            return None
        n_rows = len(instances)
        try:
            row_types = set(map(type, instances))
            if row_types == {dict}:
                # No feature missing (else KeyError) and the right key count: no unknown feature.
                if sum(map(len, instances)) != self.n_features * n_rows:
                    return None
                keys = self.n_features * n_rows
                numeric_rows = list(map(self._numeric_named, instances))
                categorical_rows = (
                    list(map(self._categorical_named, instances)) if self.categorical_names else []
                )
            elif row_types == {list} and set(map(len, instances)) == {self.n_features}:
                keys = 0
                # All numeric: a row is already its numeric values in feature order.
                numeric_rows = (
                    list(map(self._numeric_positional, instances)) if self.categorical_names else instances
                )
                categorical_rows = (
                    list(map(self._categorical_positional, instances)) if self.categorical_names else []
                )
            else:
                return None
            columns: list[Sequence[str | None]] = []
            if self.categorical_names:
                if not set(map(type, chain.from_iterable(categorical_rows))) <= _CATEGORICAL_TYPES:
                    return None
                columns = list(zip(*categorical_rows, strict=True))
            gaps = [column.count(None) for column in columns]
            # When "instances", the keys and the categorical values are all the body's strings and
            # it has no true/false token, the numeric values need no per-value type check.
            in_keys = n_rows if keys else 0
            in_values = letters("".join(filter(None, chain.from_iterable(columns))))
            expected_letters = (
                _INSTANCES_LETTERS[0] + in_keys * self._name_letters[0] + in_values[0],
                _INSTANCES_LETTERS[1] + in_keys * self._name_letters[1] + in_values[1],
            )
            strings = 1 + keys + n_rows * len(columns) - sum(gaps)
            plain = tokens.only_numbers_besides(strings, expected_letters)
            numeric = self._numeric_block(numeric_rows, n_rows, plain)
        except (KeyError, TypeError, ValueError, OverflowError):  # e.g. an int too big for a float
            return None
        if numeric is None:
            return None
        return self._batch(n_rows, numeric, columns, gaps)

    def _numeric_block(self, rows: list[Row], n_rows: int, plain: bool) -> np.ndarray | None:
        """The (rows, numeric features) matrix, or None if a value is not a number or null.

        `plain`: the body's bytes already show no value here is a string or a boolean.
        """
        width = len(self.numeric_names)
        if not width:
            return np.empty((n_rows, 0), dtype=np.float64)
        if not plain:
            # Exact, and a C-level pass: a bool's type is bool, and strings are refused here rather
            # than converted by numpy.
            types = set(map(type, chain.from_iterable(rows)))
            if not types <= _NUMERIC_TYPES:
                return None
        # None becomes NaN; an array or object where a number belongs raises, or changes the shape.
        matrix = np.array(rows, dtype=np.float64)
        if matrix.shape != (n_rows, width):
            return None
        if (np.abs(matrix) > self.max_abs).any():  # NaN compares False: only real overflows count
            return None
        return matrix

    def _batch(
        self,
        n_rows: int,
        numeric: np.ndarray,
        columns: list[Sequence[str | None]],
        column_gaps: Sequence[int] | None = None,
    ) -> Batch:
        """The Batch, with per-column counts of missing values and unknown categories."""
        missing: dict[str, int] = {}
        unknown: dict[str, int] = {}
        if numeric.size and np.isnan(numeric).any():
            counts = np.isnan(numeric).sum(axis=0).tolist()
            missing.update((n, c) for n, c in zip(self.numeric_names, counts, strict=True) if c)
        if column_gaps is None:
            column_gaps = [column.count(None) for column in columns]
        for name, known, column, gaps in zip(
            self.categorical_names, self._known, columns, column_gaps, strict=True
        ):
            if gaps:
                missing[name] = gaps
            unseen = 0 if name in self._date_names else n_rows - gaps - sum(map(known.__contains__, column))
            if unseen:
                unknown[name] = unseen
        if self._dates:
            numeric, columns = self._date_parts(numeric, columns)
        return Batch(n_rows, numeric, columns, missing, unknown)

    def _date_parts(
        self, numeric: np.ndarray, columns: Sequence[Sequence[str | None]]
    ) -> tuple[np.ndarray, list[Sequence[str | None]]]:
        """The model's numeric columns (the numbers, then each date's parts) and its categorical
        ones, or a 422 naming each row and field whose value is not a date."""
        blocks = [numeric]
        problems: list[dict[str, Any]] = []
        for k, name in self._dates:
            matrix, bad = date_matrix(columns[k])
            problems.extend(
                problem(i, name, DATE_PROBLEM) for i in bad[: MAX_REPORTED_ERRORS - len(problems)]
            )
            blocks.append(matrix)
        if problems:
            first = problems[0]
            where = f"row {first['row']}, field {first['field']}"
            raise ClientError(422, "invalid_instances", f"{where}: {first['message']}", problems)
        dates = {k for k, _ in self._dates}
        return np.hstack(blocks), [c for k, c in enumerate(columns) if k not in dates]

    def _exact(self, doc: Any) -> Batch:
        """Validate value by value, collecting every problem (up to the cap) with its row and field."""
        if not isinstance(doc, dict):
            raise ClientError(
                422,
                "invalid_body",
                f"body must be a JSON object, got {json_type(doc)}",
                [problem(None, None, 'expected {"instances": [...]}')],
            )
        unknown_top = (
            problem(None, str(key), "unknown top-level field") for key in doc if key != "instances"
        )
        problems = list(islice(unknown_top, MAX_REPORTED_ERRORS))
        instances = doc.get("instances")
        if "instances" not in doc:
            problems.append(problem(None, "instances", "is required"))
        elif not isinstance(instances, list):
            problems.append(
                problem(None, "instances", f"must be an array of rows, got {json_type(instances)}")
            )
        elif not instances:
            problems.append(problem(None, "instances", "must contain at least one row"))
        elif len(instances) > self.max_rows:
            problems.append(
                problem(None, "instances", f"has {len(instances)} rows; at most {self.max_rows} are allowed")
            )
        if problems:
            raise ClientError(422, "invalid_body", problems[0]["message"], problems)
        assert isinstance(instances, list)
        n_rows = len(instances)
        numeric = np.empty((n_rows, len(self.numeric_names)), dtype=np.float64)
        columns: list[list[str | None]] = [[None] * n_rows for _ in self.categorical_names]
        for row_index, row in enumerate(instances):
            problems.extend(
                self._check_row(row_index, row, numeric, columns, MAX_REPORTED_ERRORS - len(problems))
            )
            if len(problems) >= MAX_REPORTED_ERRORS:
                break
        if problems:
            first = problems[0]
            where = f"row {first['row']}" + (f", field {first['field']}" if first["field"] else "")
            raise ClientError(422, "invalid_instances", f"{where}: {first['message']}", problems)
        return self._batch(n_rows, numeric, list(columns))

    def _check_row(
        self, row_index: int, row: Any, numeric: np.ndarray, columns: list[list[str | None]], budget: int
    ) -> list[dict[str, Any]]:
        """At most `budget` problems of one row; fills its slots in `numeric` and `columns` as a side effect.

        Every loop stops at the budget, so the work is proportional to what is reported, not to
        the size of the row.
        """
        found: list[dict[str, Any]] = []
        if isinstance(row, dict):
            if len(row) > self.n_features + MAX_REPORTED_ERRORS:
                # Far more keys than features: say so once, name a few, and skip the value checks.
                found.append(
                    problem(
                        row_index, None, f"has {len(row)} fields; the model has {self.n_features} features"
                    )
                )
            unknown = (problem(row_index, str(k), "unknown feature") for k in row if k not in self._positions)
            found.extend(islice(unknown, max(budget - len(found), 0)))
            if len(row) > self.n_features + MAX_REPORTED_ERRORS:
                return found
            values: list[tuple[int, Any]] = []
            for position, name in enumerate(self.names):
                if name in row:
                    values.append((position, row[name]))
                elif len(found) < budget:
                    found.append(problem(row_index, name, "is required (null for a missing value)"))
        elif isinstance(row, list):
            if len(row) != self.n_features:
                return [problem(row_index, None, f"must have {self.n_features} values, got {len(row)}")]
            values = list(enumerate(row))
        else:
            message = (
                f"must be an object of named features or an array of {self.n_features} values, "
                f"got {json_type(row)}"
            )
            return [problem(row_index, None, message)]
        for position, value in values:
            if len(found) >= budget:
                break
            is_numeric, index = self._slot[position]
            reason = (
                _numeric_problem(value, self.max_abs)
                if is_numeric
                else _categorical_problem(value, self._what[index])
            )
            if reason:
                found.append(problem(row_index, self.names[position], reason))
            elif is_numeric:
                numeric[row_index, index] = math.nan if value is None else float(value)
            else:
                columns[index][row_index] = value
        return found
