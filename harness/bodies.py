"""The largest bodies of each kind a client can send within the body limit: what bounds a replica's
memory per request (bench/body_memory.py measures them, tests/integration/test_memory_bounds.py sends them
to the image under `make run`'s limits). Each is built to fill `size` bytes."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

PREDICT = "/predict"
V2 = "/v2/models/lockstep/infer"


@dataclass(frozen=True)
class Model:
    """What the bodies are shaped after: the served model's features and the row limit."""

    names: list[str]
    example: dict[str, Any]
    max_rows: int

    @classmethod
    def of(cls, metadata: dict[str, Any], max_rows: int) -> Model:
        names = [f["name"] for f in metadata["features"]]
        return cls(names, {n: metadata["example"][n] for n in names}, max_rows)


def _number(index: int, width: int) -> bytes:
    """A distinct float (a new object when parsed) written in `width` bytes or more."""
    text = b"%d.%d" % (index % 997, index)
    return text + b"1" * max(0, width - len(text) - 1) + b"5" if width > len(text) else text


def _numbers(count: int, width: int) -> list[bytes]:
    return [_number(i, width) for i in range(count)]


def _fill(size: int, count: int, fixed: int) -> int:
    """Width per number so `count` of them, with `fixed` bytes of the rest, come to about `size`."""
    return max(1, (size - fixed) // max(1, count) - 1)


def predict_positional(model: Model, size: int) -> bytes:
    width = len(model.names)
    count = model.max_rows * width
    numbers = _numbers(count, _fill(size, count, 2 * model.max_rows + 16))
    rows = (b"[" + b",".join(numbers[i : i + width]) + b"]" for i in range(0, count, width))
    return b'{"instances":[' + b",".join(rows) + b"]}"


def predict_named(model: Model, size: int) -> bytes:
    keys = [orjson.dumps(n) + b":" for n in model.names]
    count = model.max_rows * len(keys)
    fixed = model.max_rows * (sum(map(len, keys)) + 2) + 16
    numbers = _numbers(count, _fill(size, count, fixed))
    width = len(keys)
    rows = (
        b"{" + b",".join(k + v for k, v in zip(keys, numbers[i : i + width], strict=True)) + b"}"
        for i in range(0, count, width)
    )
    return b'{"instances":[' + b",".join(rows) + b"]}"


def predict_nan(model: Model, size: int) -> bytes:
    """Positional rows whose first value is NaN: orjson refuses it, so the standard parser reads all."""
    body = predict_positional(model, size)
    return b'{"instances":[[NaN' + body[body.index(b",") :]


def v2_matrix(model: Model, size: int) -> bytes:
    count = model.max_rows * len(model.names)
    numbers = _numbers(count, _fill(size, count, 120))
    head = b'{"inputs":[{"name":"X","shape":[%d,%d],"datatype":"FP64","data":[' % (
        model.max_rows,
        len(model.names),
    )
    return head + b",".join(numbers) + b"]}]}"


def v2_columns_nested(model: Model, size: int) -> bytes:
    """One [N, 1] tensor per feature, its data nested: two values per number."""
    rows = model.max_rows
    fixed = len(model.names) * (80 + 3 * rows)
    width = _fill(size, rows * len(model.names), fixed)
    tensors = []
    for k, name in enumerate(model.names):
        numbers = _numbers(rows, width)
        data = b",".join(b"[" + v + b"]" for v in numbers[k:] + numbers[:k])
        tensors.append(
            b'{"name":'
            + orjson.dumps(name)
            + b',"shape":[%d,1],"datatype":"FP64","data":[' % rows
            + data
            + b"]}"
        )
    return b'{"inputs":[' + b",".join(tensors) + b"]}"


def one_string(size: int, astral: bool = False) -> bytes:
    """One unknown key of about `size` bytes; astral: with one 4-byte character, so the parsed text
    takes 4 bytes per character."""
    text = b"a" * (size - 40) + ("\U0001f600".encode() if astral else b"")
    return b'{"instances":[{"' + text + b'":1}]}'


def string_flood(model: Model, size: int) -> bytes:
    """As many unknown keys as the pre-parse bound lets through, each as long as fills `size`."""
    count = 1 + model.max_rows * len(model.names) - 1
    width = max(1, size // count - 6)
    keys = (b'"%0*d":0' % (width, i) for i in range(count))
    return b'{"instances":[{' + b",".join(keys) + b"}]}"


def value_flood(model: Model, size: int) -> bytes:
    """As many distinct floats in one row as the pre-parse value bound lets through."""
    count = 2 * (2 + model.max_rows * (1 + len(model.names))) - 8
    numbers = _numbers(count, _fill(size, count, 20))
    return b'{"instances":[[' + b",".join(numbers) + b"]]}"


def zeros(size: int) -> bytes:
    """Far more values than any valid body: refused before parsing."""
    return b'{"instances":[[' + b"0," * ((size - 20) // 2) + b"0]]}"


def deep(size: int, where: bytes = b"") -> bytes:
    """Brackets nested past any parser's depth (orjson's 1,024, Python's recursion limit)."""
    depth = min(size // 2 - 40, 200_000)
    return b'{"instances":' + where + b"[" * depth + b"]" * depth + b"}"


def v2_zeros(size: int) -> bytes:
    head = b'{"inputs":[{"name":"X","shape":[1,1],"datatype":"FP64","data":['
    return head + zeros(size - 64)[15:-2] + b"]}]}"


def v2_big_id(size: int) -> bytes:
    return b'{"id":"' + b"a" * (size - 120) + b'","inputs":[]}'


# kind -> (path, body of about `size` bytes for the model)
LARGEST: dict[str, tuple[str, Callable[[Model, int], bytes]]] = {
    "predict_positional_floats": (PREDICT, predict_positional),
    "predict_named_floats": (PREDICT, predict_named),
    "predict_nan_floats_stdlib_parser": (PREDICT, predict_nan),
    "predict_one_string": (PREDICT, lambda m, s: one_string(s)),
    "predict_one_astral_string": (PREDICT, lambda m, s: one_string(s, astral=True)),
    "predict_string_flood": (PREDICT, string_flood),
    "predict_value_flood": (PREDICT, value_flood),
    "predict_zeros": (PREDICT, lambda m, s: zeros(s)),
    "predict_deep_nesting": (PREDICT, lambda m, s: deep(s)),
    "v2_matrix_floats": (V2, v2_matrix),
    "v2_columns_nested_floats": (V2, v2_columns_nested),
    "v2_big_id": (V2, lambda m, s: v2_big_id(s)),
    "v2_zeros": (
        V2,
        lambda m, s: (
            b'{"inputs":[{"name":"X","shape":[1,1],"datatype":"FP64","data":['
            + zeros(s - 64)[15:-2]
            + b"]}]}"
        ),
    ),
}


def post_status(url: str, body: bytes) -> int:
    """POST a JSON body; the status, whatever it is (the answer is read and dropped)."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            reply.read()
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        return int(exc.code)
