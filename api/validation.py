"""Turns a POST /predict body into a float64 matrix, or a ClientError naming each bad row and field.

Two paths give the same answer. The fast path handles well-formed input with a few C-level passes
(orjson, itemgetter, a set of value types, np.fromiter) and returns None at the first doubt;
the exact path then walks the document value by value and says precisely what is wrong.
Keeping the fast path free of error reporting is what makes it fast.
"""

import json
import math
from collections.abc import Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from api.errors import MAX_REPORTED_ERRORS, ClientError, problem

# Feature values are measurements; magnitudes past this are refused by name rather than left to
# overflow the model's arithmetic into inf/NaN (a scaled linear model stays finite well inside it).
MAX_ABS_VALUE = 1e100
_NUMBER_TYPES = frozenset({int, float})


def _json_type(value: Any) -> str:
    """JSON name of a parsed value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _value_problem(value: Any) -> str | None:
    """Why a parsed JSON value is not an acceptable feature value, or None if it is."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number, got {_json_type(value)}"
    try:
        as_float = float(value)
    except OverflowError:
        return "is out of range for a 64-bit float"
    if not math.isfinite(as_float):
        return f"must be a finite number, got {as_float}"
    if abs(as_float) > MAX_ABS_VALUE:
        return f"must be between {-MAX_ABS_VALUE:g} and {MAX_ABS_VALUE:g}"
    return None


class InstanceParser:
    """Parses and validates `{"instances": [...]}` bodies against the model's feature list."""

    def __init__(self, feature_names: Sequence[str], max_rows: int):
        self.names = tuple(feature_names)
        self.n_features = len(self.names)
        self.max_rows = max_rows
        self._positions = {name: i for i, name in enumerate(self.names)}
        getter = itemgetter(*self.names)
        # itemgetter with one key returns the bare value, not a 1-tuple.
        self._row_values = getter if self.n_features > 1 else (lambda row: (getter(row),))

    def parse(self, body: bytes) -> np.ndarray:
        """Return the (rows, features) float64 matrix or raise ClientError (400 malformed, 422 invalid)."""
        matrix = self._fast(body)
        return matrix if matrix is not None else self._exact(body)

    def _fast(self, body: bytes) -> np.ndarray | None:
        """Validate well-formed input cheaply; None means "not sure", never "invalid"."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if type(doc) is not dict or len(doc) != 1:
            return None
        instances = doc.get("instances")
        if type(instances) is not list or not 0 < len(instances) <= self.max_rows:
            return None
        n_rows, n_features = len(instances), self.n_features
        rows: list[Any] = instances
        try:
            if type(instances[0]) is dict:
                rows = list(map(self._row_values, instances))  # KeyError: a feature is missing
                # No feature was missing, so a row has unknown features iff it has too many keys.
                if sum(map(len, instances)) != n_features * n_rows:
                    return None
            elif set(map(len, rows)) != {n_features}:
                return None
            # Exact, and a C-level pass: only ints and floats (a bool's type is bool, a dict row in
            # an array batch yields str keys). It also keeps np.fromiter from converting "1.5".
            if not set(map(type, chain.from_iterable(rows))) <= _NUMBER_TYPES:
                return None
            values = np.fromiter(chain.from_iterable(rows), np.float64, n_rows * n_features)
        except (KeyError, TypeError, ValueError, OverflowError):  # e.g. an int too big for a float
            return None
        matrix = values.reshape(n_rows, n_features)
        if not np.abs(matrix).max() <= MAX_ABS_VALUE:
            return None
        return matrix

    def _exact(self, body: bytes) -> np.ndarray:
        """Validate value by value, collecting every problem with its row and field."""
        doc = self._load_for_diagnosis(body)
        if not isinstance(doc, dict):
            raise ClientError(
                422,
                "invalid_body",
                f"body must be a JSON object, got {_json_type(doc)}",
                [problem(None, None, 'expected {"instances": [...]}')],
            )
        problems = [problem(None, str(key), "unknown top-level field") for key in doc if key != "instances"]
        instances = doc.get("instances")
        if "instances" not in doc:
            problems.append(problem(None, "instances", "is required"))
        elif not isinstance(instances, list):
            problems.append(
                problem(None, "instances", f"must be an array of rows, got {_json_type(instances)}")
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
        matrix = np.empty((len(instances), self.n_features), dtype=np.float64)
        for row_index, row in enumerate(instances):
            problems.extend(self._check_row(row_index, row, matrix))
            if len(problems) >= MAX_REPORTED_ERRORS:
                break
        if problems:
            first = problems[0]
            where = f"row {first['row']}" + (f", field {first['field']}" if first["field"] else "")
            raise ClientError(422, "invalid_instances", f"{where}: {first['message']}", problems)
        return matrix

    def _check_row(self, row_index: int, row: Any, matrix: np.ndarray) -> list[dict[str, Any]]:
        """Problems of one row; fills matrix[row_index] as a side effect when the row is valid."""
        found: list[dict[str, Any]] = []
        if isinstance(row, dict):
            for key in row:
                if key not in self._positions:
                    found.append(problem(row_index, str(key), "unknown feature"))
            for position, name in enumerate(self.names):
                if name not in row:
                    found.append(problem(row_index, name, "is required"))
                    continue
                message = _value_problem(row[name])
                if message:
                    found.append(problem(row_index, name, message))
                else:
                    matrix[row_index, position] = float(row[name])
        elif isinstance(row, list):
            if len(row) != self.n_features:
                return [problem(row_index, None, f"must have {self.n_features} values, got {len(row)}")]
            for position, value in enumerate(row):
                message = _value_problem(value)
                if message:
                    found.append(problem(row_index, self.names[position], message))
                else:
                    matrix[row_index, position] = float(value)
        else:
            found.append(
                problem(
                    row_index,
                    None,
                    f"must be an object of named features or an array of {self.n_features} numbers, "
                    f"got {_json_type(row)}",
                )
            )
        return found

    @staticmethod
    def _load_for_diagnosis(body: bytes) -> Any:
        """Parse leniently so NaN/Infinity tokens can be reported by row and field; else a 400."""
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
        try:
            return json.loads(body)  # accepts NaN, Infinity, -Infinity and 1e999, which orjson refuses
        except json.JSONDecodeError as exc:
            message = f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            message = f"malformed JSON: {exc.__class__.__name__}"
        raise ClientError(400, "malformed_json", message, [problem(None, None, message)])
