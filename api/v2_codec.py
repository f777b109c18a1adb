"""The Open Inference Protocol's (V2) codec for one loaded model: an infer request's tensors into the
`Batch` /predict builds, with the shape, datatype and size bounds checked before any arithmetic, and
the scores into the protocol's outputs; and the model metadata document. api/v2.py serves it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import orjson

from api.batch import Batch
from api.errors import ClientError, problem, safe_text
from api.model import ServedModel
from api.runners import Scores
from api.tokens import BodyTokens
from api.validation import DATE_PROBLEM, date_matrix

JSON = "application/json"
INT_TYPES = {
    f"{sign}INT{bits}": np.dtype(f"{sign.lower()}int{bits}") for sign in ("", "U") for bits in (8, 16, 32, 64)
}
FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
NUMERIC_TYPES = FLOAT_TYPES | set(INT_TYPES)
_WIDE_INTS = frozenset({"INT64", "UINT64"})  # past float64's exact integers (2**53)
DATATYPES = NUMERIC_TYPES | {"BOOL", "BYTES"}
_FLOAT_VALUES = frozenset({int, float, type(None)})
_INT_VALUES = frozenset({int, type(None)})
_TEXT_VALUES = frozenset({str, type(None)})
# A request's id is echoed in its answer: an identifier, not a payload.
MAX_ID_LENGTH = 256
# Strings and values a request may hold besides its data, per request and per tensor.
_SLACK = 64
_PARAMETER_VALUES = frozenset({str, int, float, bool})
# FP16's largest finite value: a larger one would become inf in a half-precision tensor.
FP16_MAX = 65504.0
_REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})
_INPUT_KEYS = frozenset({"name", "shape", "datatype", "data", "parameters"})
# The specification's platform names are "<project>_<format>"; onnx_onnxv1 is its own name for an
# ONNX model run by ONNX Runtime.
PLATFORMS = {"onnx": "onnx_onnxv1", "sklearn": "sklearn_joblib"}


def bad_request(message: str, field: str | None = None) -> ClientError:
    return ClientError(400, "invalid_v2_request", message, [problem(None, field, message)])


def _flatten(data: list[Any] | np.ndarray, shape: list[int], where: str) -> list[Any] | np.ndarray:
    """Row-major values of `data`, flat or nested as `shape` (already bounded) says; refuses a
    nesting that disagrees. An array (api.dense_json's flat float data) is flat already."""
    depth = 0
    while len(data) and type(data[0]) is list:
        size = math.prod(shape[: depth + 1])
        if depth + 1 >= len(shape) or len(data) != size or set(map(type, data)) != {list}:
            raise bad_request(f"{where}.data: its nesting does not match shape {shape}", f"{where}.data")
        if set(map(len, data)) != {shape[depth + 1]}:
            raise bad_request(f"{where}.data: its nesting does not match shape {shape}", f"{where}.data")
        data = list(chain.from_iterable(data))
        depth += 1
    if len(data) != math.prod(shape):
        raise bad_request(
            f"{where}: shape {shape} holds {math.prod(shape)} values, data has {len(data)}", f"{where}.data"
        )
    return data


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: list[int]
    datatype: str
    values: list[Any] | np.ndarray  # flat, row-major; float64 when api.dense_json parsed it
    where: str  # "inputs[i]", for messages


@dataclass(frozen=True)
class ShapeBounds:
    """What a tensor's shape may be before anything is computed from it: [N] or [N, k], N at most
    the row limit and k at most the feature count, so their product is bounded too."""

    max_rows: int
    max_columns: int

    def check(self, shape: Any, where: str, field: str) -> list[int]:
        if type(shape) is not list or not 1 <= len(shape) <= 2:
            got = "not an array" if type(shape) is not list else f"rank {len(shape)}"
            raise bad_request(f"{where}: shape must be [N] or [N, k], got {got}", field)
        limits = (self.max_rows, self.max_columns)
        for axis, (dim, limit) in enumerate(zip(shape, limits, strict=False)):
            if type(dim) is not int or not 0 <= dim <= limit:
                shown = safe_text(dim, 24) if type(dim) is int else _json_type_name(dim)
                message = f"{where}: shape[{axis}] must be an integer from 0 to {limit}, got {shown}"
                raise bad_request(message, field)
        return shape


def _json_type_name(value: Any) -> str:
    return {bool: "a boolean", str: "a string", float: "a non-integer number", type(None): "null"}.get(
        type(value), safe_text(value)
    )


def _tensor(index: int, spec: Any, bounds: ShapeBounds) -> Tensor:
    where = f"inputs[{index}]"
    if type(spec) is not dict:
        raise bad_request(f"{where} must be an object with name, shape, datatype and data", where)
    missing = [key for key in ("name", "shape", "datatype", "data") if key not in spec]
    if missing:
        raise bad_request(f"{where} has no {missing[0]!r}", f"{where}.{missing[0]}")
    unknown = [key for key in spec if key not in _INPUT_KEYS]
    if unknown:
        raise bad_request(f"{where}: unknown field {safe_text(unknown[0])!r}", f"{where}.{unknown[0]}")
    name, datatype, data = spec["name"], spec["datatype"], spec["data"]
    if type(name) is not str:
        raise bad_request(f"{where}.name must be a string", f"{where}.name")
    where = f"input {safe_text(name)!r}"
    shape = bounds.check(spec["shape"], where, f"{name}.shape")
    if type(datatype) is not str or datatype not in DATATYPES:
        message = f"{where}: unknown datatype {safe_text(datatype)!r} (one of {', '.join(sorted(DATATYPES))})"
        raise bad_request(message, f"{name}.datatype")
    if type(data) is not list and type(data) is not np.ndarray:
        raise bad_request(f"{where}: data must be an array (binary tensor data is not supported)", name)
    _check_parameters(spec.get("parameters", {}), f"{where}: parameters", f"{name}.parameters")
    return Tensor(name, shape, datatype, _flatten(data, shape, where), where)


def _numbers_only_in_data(doc: dict[str, Any], tokens: BodyTokens) -> bool:
    """Whether every string of the body is outside the tensors' data (keys, names, datatypes,
    ids, parameters, outputs) and it has no true/false token: then the data holds none."""
    inputs = doc.get("inputs")
    data = {id(t.get("data")) for t in inputs if type(t) is dict} if type(inputs) is list else set()
    texts: list[str] = []
    stack: list[Any] = [doc]
    while stack:
        value = stack.pop()
        if type(value) is dict:
            texts.extend(value)
            stack.extend(value.values())
        elif type(value) is list:
            if id(value) not in data:
                stack.extend(value)
        elif type(value) is str:
            texts.append(value)
    joined = "".join(texts)
    return tokens.only_numbers_besides(len(texts), (joined.count("r"), joined.count("a")))


def _check_parameters(parameters: Any, where: str, field: str) -> None:
    """The specification's parameters: an object whose values are strings, numbers or booleans."""
    if type(parameters) is not dict:
        raise bad_request(f"{where} must be an object", field)
    if not set(map(type, parameters.values())) <= _PARAMETER_VALUES:
        message = f"{where}: each value must be a string, number or boolean (not an array, object or null)"
        raise bad_request(message, field)


class V2Codec:
    """Decodes infer requests into Batches and encodes Scores, for one loaded model."""

    def __init__(self, model: ServedModel, name: str):
        self.model = model
        self.name = name
        parser = model.parser
        self.features = parser.features
        self.numeric_index = {n: k for k, n in enumerate(parser.numeric_names)}
        self.categorical_index = {n: k for k, n in enumerate(parser.categorical_names)}  # and dates
        self.dates = [f.name for f in parser.features if f.kind == "date"]
        self.all_numeric = not parser.categorical_names
        self.classifier = model.metadata.is_classifier
        self.output_names = ("label", "probabilities") if self.classifier else ("value",)
        self.metadata_document = orjson.dumps(self._describe())
        self.bounds = ShapeBounds(parser.max_rows, len(self.features))
        # Before parsing (as /predict): a valid request holds a few strings per tensor (keys, name,
        # datatype, parameters) plus its BYTES values, and at most two values per feature value
        # (one more per value in a nested [N, 1] column).
        per_request = _SLACK * (1 + len(self.features))
        self.max_strings = per_request + parser.max_rows * len(parser.categorical_names)
        self.max_values = per_request + 2 * parser.max_rows * len(self.features)

    def _describe(self) -> dict[str, Any]:
        def tensor(name: str, datatype: str, shape: list[int]) -> dict[str, Any]:
            return {"name": name, "datatype": datatype, "shape": shape}

        inputs = [tensor(f.name, "FP64" if f.numeric else "BYTES", [-1, 1]) for f in self.features]
        if self.classifier:
            outputs = [
                tensor("label", "BYTES", [-1]),
                tensor("probabilities", "FP64", [-1, len(self.model.classes)]),
            ]
        else:
            outputs = [tensor("value", "FP64", [-1])]
        # The specification's metadata has no `parameters` (and a parameter value is never a list):
        # the probabilities' column order is GET /model's `classes`.
        return {
            "name": self.name,
            "versions": [self.model.version],
            "platform": PLATFORMS.get(self.model.runner.kind, f"lockstep_{self.model.runner.kind}"),
            "inputs": inputs,
            "outputs": outputs,
        }

    def decode(self, doc: Any, tokens: BodyTokens | None = None) -> tuple[Batch, tuple[str, ...]]:
        """The request's Batch and the outputs to return, or ClientError(400) naming what is wrong.

        `tokens`: the body's byte counts, when `doc` is its strict parse; with them, a body whose
        strings are all outside the tensors' data holds only numbers and nulls there (no string,
        no boolean), so numeric data goes to numpy without a per-value type check.
        """
        if type(doc) is not dict:
            raise bad_request("the request must be a JSON object with 'inputs'")
        unknown = [key for key in doc if key not in _REQUEST_KEYS]
        if unknown:
            raise bad_request(f"unknown top-level field {safe_text(unknown[0])!r}", unknown[0])
        if "id" in doc and (type(doc["id"]) is not str or len(doc["id"]) > MAX_ID_LENGTH):
            raise bad_request(f"id must be a string of at most {MAX_ID_LENGTH} characters", "id")
        if "parameters" in doc:
            _check_parameters(doc["parameters"], "parameters", "parameters")
        inputs = doc.get("inputs")
        if type(inputs) is not list or not inputs:
            raise bad_request("inputs must be a non-empty array of tensors", "inputs")
        tensors = [_tensor(i, spec, self.bounds) for i, spec in enumerate(inputs)]
        plain = tokens is not None and _numbers_only_in_data(doc, tokens)
        batch = self._matrix(tensors[0], plain) if self._is_matrix(tensors) else self._columns(tensors, plain)
        return batch, self._outputs(doc.get("outputs"))

    def _outputs(self, requested: Any) -> tuple[str, ...]:
        if requested is None:
            return self.output_names
        if (
            type(requested) is not list
            or len(requested) > len(self.output_names)
            or not all(type(o) is dict and type(o.get("name")) is str for o in requested)
        ):
            message = (
                f'outputs must be an array of at most {len(self.output_names)} {{"name": string, '
                '"parameters": object (optional)}'
            )
            raise bad_request(message, "outputs")
        for o in requested:
            _check_parameters(o.get("parameters", {}), "outputs must be an array whose parameters", "outputs")
        names = tuple(o["name"] for o in requested)
        for name in names:
            if name not in self.output_names:
                message = f"unknown output {safe_text(name)!r}: this model has {list(self.output_names)}"
                raise bad_request(message, "outputs")
        if len(set(names)) != len(names):
            raise bad_request("outputs: an output is requested twice", "outputs")
        return names

    def _is_matrix(self, tensors: list[Tensor]) -> bool:
        one = tensors[0]
        named_feature = one.name in self.numeric_index or one.name in self.categorical_index
        return len(tensors) == 1 and len(one.shape) == 2 and not named_feature

    def _rows(self, tensor: Tensor) -> int:
        rows = tensor.shape[0]
        if not 0 < rows <= self.model.parser.max_rows:
            message = f"{tensor.where}: {rows} rows; between 1 and {self.model.parser.max_rows} are allowed"
            raise bad_request(message, f"{tensor.name}.shape")
        return rows

    def _matrix(self, tensor: Tensor, plain: bool) -> Batch:
        """One [N, F] numeric tensor, columns in feature order."""
        width = len(self.features)
        if not self.all_numeric:
            message = (
                f"{tensor.where}: this model has categorical features, so it takes one tensor per "
                f"feature ({', '.join(f.name for f in self.features)}), not one [N, F] tensor"
            )
            raise bad_request(message, tensor.name)
        if tensor.shape[1] != width:
            message = f"{tensor.where}: shape {tensor.shape} must be [N, {width}] (one column per feature)"
            raise bad_request(message, f"{tensor.name}.shape")
        rows = self._rows(tensor)
        numeric = self._numbers(tensor, plain).reshape(rows, width)
        return self.model.parser._batch(rows, numeric, [])

    def _columns(self, tensors: list[Tensor], plain: bool) -> Batch:
        """One [N] or [N, 1] tensor per feature."""
        by_name: dict[str, Tensor] = {}
        for tensor in tensors:
            if tensor.name in by_name:
                raise bad_request(f"{tensor.where} is given twice", tensor.name)
            if tensor.name not in self.numeric_index and tensor.name not in self.categorical_index:
                known = ", ".join(f.name for f in self.features)
                raise bad_request(f"unknown {tensor.where}: the model's inputs are {known}", tensor.name)
            by_name[tensor.name] = tensor
        absent = [f.name for f in self.features if f.name not in by_name]
        if absent:
            message = f"missing input {absent[0]!r} (one tensor per feature; null for a missing value)"
            raise bad_request(message, absent[0])
        first = tensors[0]
        rows = self._rows(first)
        for tensor in tensors:
            if tensor.shape not in ([rows], [rows, 1]):
                message = f"{tensor.where}: shape {tensor.shape} must be [{rows}] or [{rows}, 1]"
                raise bad_request(message, f"{tensor.name}.shape")
        numeric = np.empty((rows, len(self.numeric_index)), dtype=np.float64)
        for name, k in self.numeric_index.items():
            numeric[:, k] = self._numbers(by_name[name], plain)
        columns: list[Sequence[str | None]] = [
            self._categories(by_name[name]) for name in self.categorical_index
        ]
        for name in self.dates:  # refused here, located in the tensor, rather than by _batch
            _, bad = date_matrix(columns[self.categorical_index[name]])
            if bad:
                message = f"{by_name[name].where}: data[{bad[0]}] {DATE_PROBLEM}"
                raise bad_request(message, f"{name}.data")
        return self.model.parser._batch(rows, numeric, columns)

    def _numbers(self, tensor: Tensor, plain: bool = False) -> np.ndarray:
        """The tensor's values as float64 (null -> NaN, a missing value); refuses what /predict refuses.

        `plain`: the body shows no string or boolean among the data; then a float tensor's values
        are numbers, nulls, or containers, which numpy refuses (and the exact check then names).
        """
        if type(tensor.values) is np.ndarray:  # float data, parsed as float64 (api.dense_json)
            return self._checked(tensor, tensor.values)
        array = self._plain_floats(tensor) if plain else None
        return self._checked(tensor, array)

    @staticmethod
    def _plain_floats(tensor: Tensor) -> np.ndarray | None:
        if tensor.datatype not in FLOAT_TYPES:
            return None
        try:
            array = np.array(tensor.values, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            return None
        return array if array.shape == (len(tensor.values),) else None

    def _checked(self, tensor: Tensor, array: np.ndarray | None) -> np.ndarray:
        where, datatype, values = tensor.where, tensor.datatype, tensor.values
        if datatype not in NUMERIC_TYPES:
            raise bad_request(
                f"{where} is a numeric feature: datatype must be FP16/32/64, INT* or UINT*, got {datatype}",
                f"{tensor.name}.datatype",
            )
        allowed = _FLOAT_VALUES if datatype in FLOAT_TYPES else _INT_VALUES
        # Exact types: a bool is not a number here, and numpy would turn "1.5" into 1.5.
        types = allowed if array is not None else set(map(type, values))
        if not types <= allowed:
            wrong = next(v for v in values if type(v) not in allowed)
            kind = "numbers" if datatype in FLOAT_TYPES else "integers"
            message = f"{where}: {datatype} data must be {kind} or null, got {_shown(wrong)}"
            raise bad_request(message, f"{tensor.name}.data")
        if datatype in _WIDE_INTS:
            # Exactly, on the integers themselves: as float64, 2**63 equals float(2**63 - 1).
            info = np.iinfo(INT_TYPES[datatype])
            ints = [v for v in values if v is not None] if type(None) in types else values
            if ints and (min(ints) < info.min or max(ints) > info.max):
                raise bad_request(f"{where}: a value is out of {datatype}'s range", f"{tensor.name}.data")
        if array is None:
            try:
                array = np.array(values, dtype=np.float64)
            except OverflowError:
                message = f"{where}: a value is out of range for a 64-bit float"
                raise bad_request(message, tensor.name) from None
        if datatype in INT_TYPES and datatype not in _WIDE_INTS:
            present = array[~np.isnan(array)]  # not nanmin: an all-null tensor would warn
            info = np.iinfo(INT_TYPES[datatype])
            if present.size and (present.min() < info.min or present.max() > info.max):
                raise bad_request(f"{where}: a value is out of {datatype}'s range", f"{tensor.name}.data")
        max_abs = self.model.parser.max_abs
        if datatype == "FP16":
            max_abs = min(max_abs, FP16_MAX)
        if not (np.abs(array) <= max_abs).all():  # False for NaN: null, or a NaN token
            bad = np.flatnonzero(~(np.abs(array) <= max_abs))
            index = next((int(i) for i in bad if values[i] is not None), None)
            if index is not None:
                value = float(array[index])
                reason = "must be finite" if not math.isfinite(value) else f"must be within ±{max_abs:g}"
                if datatype == "FP16" and math.isfinite(value):
                    reason += " (FP16's range)"
                message = f"{where}: data[{index}] {reason}, got {value:.6g}"
                raise bad_request(message, f"{tensor.name}.data")
        return array

    def _categories(self, tensor: Tensor) -> list[str | None]:
        if tensor.datatype != "BYTES":
            what = "a date" if tensor.name in self.dates else "categorical"
            message = f"{tensor.where} is {what}: datatype must be BYTES, got {tensor.datatype}"
            raise bad_request(message, f"{tensor.name}.datatype")
        if not set(map(type, tensor.values)) <= _TEXT_VALUES:
            message = f"{tensor.where}: BYTES data must be strings or null"
            raise bad_request(message, f"{tensor.name}.data")
        assert isinstance(tensor.values, list)  # api.dense_json makes arrays of float tensors only
        return tensor.values

    def encode(self, scores: Scores, outputs: tuple[str, ...], rows: int, request_id: str | None) -> bytes:
        encoded: list[dict[str, Any]] = []
        for name in outputs:
            if name == "label":
                assert scores.labels is not None
                classes = self.model.classes
                labels = [classes[i] for i in scores.labels]
                encoded.append({"name": name, "shape": [rows], "datatype": "BYTES", "data": labels})
            else:
                # FP64 numbers written by orjson straight from the float64 array, row-major: the same
                # text as for Python floats (api.predict.number_texts), without making them.
                numbers = scores.probabilities if name == "probabilities" else scores.values
                assert numbers is not None
                shape = [rows, len(self.model.classes)] if name == "probabilities" else [rows]
                flat = np.ascontiguousarray(numbers, dtype=np.float64).reshape(-1)
                encoded.append({"name": name, "shape": shape, "datatype": "FP64", "data": flat})
        response: dict[str, Any] = {"model_name": self.name, "model_version": self.model.version}
        if request_id is not None:  # a string in the specification: absent rather than null
            response["id"] = request_id
        response["outputs"] = encoded
        return orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)


def _shown(value: Any) -> str:
    """A scalar as the client wrote it (JSON), a container summarised; bounded either way."""
    if isinstance(value, list | dict):
        return safe_text(value)
    if isinstance(value, str):
        value = value[:80]
    return safe_text(orjson.dumps(value).decode())
