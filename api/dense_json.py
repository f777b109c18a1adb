"""JSON numbers straight into float64, for the bodies that are mostly numbers: a positional /predict
batch and a V2 request's float tensors.

orjson builds a Python float per number, and numpy then reads them back: for a 1,000-row batch of 30
features that is most of the request's cost. simdjson (pysimdjson) parses into its own tape and
copies a numeric array's values into one float64 buffer. Both parse numbers correctly rounded, so the
bits are the same (tests/api/test_dense_json.py compares them).

Each function answers only for a body it is sure of, and None otherwise: the caller then takes the
orjson path, whose answer (and every error message) is unchanged. Malformed JSON, a lone surrogate,
an integer past 64 bits, a null, a string or a boolean among the numbers all mean None here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import simdjson

from api.tokens import NUMPY_COUNT_BYTES, count

# Below this size a body's Python objects cost less than simdjson's set-up (one row: 1.7 µs with
# orjson against 2.6; ten rows: 13 against 7).
MIN_BYTES = 1024
_Array, _Object = simdjson.Array, simdjson.Object
# What simdjson raises for a body or value it refuses (UnicodeDecodeError is a ValueError; an
# integer past 64 bits is a RuntimeError).
_REFUSED = (ValueError, TypeError, RuntimeError)


def _parse(body: bytes) -> Any:
    """The document, or None. A parser per body: it holds its buffers only while the document lives."""
    try:
        return simdjson.Parser().parse(body)
    except _REFUSED:
        return None


def _floats(array: Any) -> np.ndarray | None:
    """An array's numbers, depth-first, as float64; None if it holds anything but numbers and arrays."""
    try:
        return np.frombuffer(array.as_buffer(of_type="d"), dtype=np.float64)
    except _REFUSED:
        return None


def _brackets(body: bytes) -> int:
    array = np.frombuffer(body, dtype=np.uint8) if len(body) > NUMPY_COUNT_BYTES else None
    return count(body, array, "[")


def instance_rows(body: bytes, width: int, max_rows: int) -> np.ndarray | None:
    """`{"instances": [[width numbers], ...]}` with 1 to `max_rows` rows: its (rows, width) matrix."""
    if len(body) < MIN_BYTES:
        return None
    doc = _parse(body)
    if type(doc) is not _Object or len(doc) != 1 or "instances" not in doc:
        return None
    rows = doc["instances"]
    if type(rows) is not _Array or not 0 < len(rows) <= max_rows:
        return None
    n_rows = len(rows)
    # Rows `width` wide, as a V2 tensor nested as its [N, k] shape; no element is itself an array
    # when the body's only brackets are the outer array's and one per row ("instances" is the
    # body's one string, and numbers have none). So the flattened values are the rows' numbers.
    if _data_brackets(rows, [n_rows, width]) != 1 + n_rows or _brackets(body) != 1 + n_rows:
        return None
    flat = _floats(rows)
    return None if flat is None else flat.reshape(n_rows, width)


def v2_request(body: bytes, float_types: frozenset[str]) -> dict[str, Any] | None:
    """The V2 request as Python values, except that each input whose datatype is one of
    `float_types` and whose data is an array of numbers, flat or nested as its [N, k] shape says,
    has that data as a flat (row-major) float64 array.

    Everything else (the keys, names, shapes, parameters, outputs, other tensors' data) is as orjson
    would give it. No deeper nesting: the body's brackets are exactly the converted document's plus
    one per flat array (1 + N per nested one), which a body with no escape shows by counting them
    (an escaped bracket would not be one).
    """
    if len(body) < MIN_BYTES or b"\\" in body:
        return None
    doc = _parse(body)
    if type(doc) is not _Object:
        return None
    request: dict[str, Any] = {}
    arrays = 0
    # By key, not items(): items() and get() convert whole values, data included.
    for key in doc:
        value: Any = doc[key]
        if key == "inputs" and type(value) is _Array:
            inputs: list[Any] = []
            for spec in value:
                if type(spec) is not _Object or "data" not in spec or type(spec["data"]) is not _Array:
                    inputs.append(_plain(spec))
                    continue
                tensor = {k: _plain(spec[k]) for k in spec if k != "data"}
                if len(tensor) != len(spec) - 1:  # a key given twice: orjson keeps the last one
                    return None
                datatype = tensor.get("datatype")
                data = _floats(spec["data"]) if type(datatype) is str and datatype in float_types else None
                if data is not None:
                    brackets = _data_brackets(spec["data"], tensor.get("shape"))
                    if brackets is None:
                        return None
                    arrays += brackets
                tensor["data"] = _plain(spec["data"]) if data is None else data
                inputs.append(tensor)
            value = inputs
        request[key] = _plain(value)
    if len(request) != len(doc):
        return None
    if _brackets(body) != _brackets_in(request) + arrays:
        return None
    return request


def _data_brackets(data: Any, shape: Any) -> int | None:
    """The brackets an array of numbers has when flat (1), or nested as its [N, k] shape says (1 + N);
    None for any other nesting, which the orjson path refuses by name."""
    if not len(data) or type(data[0]) is not _Array:
        return 1
    try:  # a number has no length: numbers beside rows
        widths = set(map(len, data))
    except TypeError:
        return None
    if type(shape) is not list or shape != [len(data), *widths]:
        return None
    return 1 + len(data)


def _plain(value: Any) -> Any:
    """A simdjson value as the Python value orjson gives (already-converted values pass through)."""
    if type(value) is _Object:
        return value.as_dict()
    if type(value) is _Array:
        return value.as_list()
    return value


def _brackets_in(value: Any) -> int:
    """'[' in the JSON text of a converted value: one per list, and those inside its strings."""
    if type(value) is dict:
        return sum(k.count("[") + _brackets_in(v) for k, v in value.items())
    if type(value) is list:
        return 1 + sum(map(_brackets_in, value))
    if type(value) is str:
        return value.count("[")
    return 0
