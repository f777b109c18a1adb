"""api.dense_json: numbers parsed straight to float64 carry the same bits as orjson's floats, and every
body it is not sure of gets None, so /predict and V2 give the orjson path's answer (errors included)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.dense_json import MIN_BYTES, instance_rows, v2_request
from api.errors import ClientError
from api.model import ServedModel, load_model
from api.v2_codec import FLOAT_TYPES, V2Codec
from api.validation import InstanceParser
from contract.features import Feature
from harness import Artifacts

WIDTH = 3
PARSER = InstanceParser([Feature(n, "numeric", None, True) for n in "abc"], max_rows=400)

# Numbers as a client may write them: Python's shortest repr, long decimals (correct rounding is
# hardest there), exponents, subnormals, and integers up to and past 64 bits.
number_texts = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.from_regex(r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
    st.integers(-(2**65), 2**65).map(str),
    st.sampled_from(["-0.0", "0", "5e-324", "2.2250738585072011e-308", "1.7976931348623157e308", "1e400"]),
)


def padded(text: str) -> bytes:
    """`text` with whitespace after its first byte, so the body is past MIN_BYTES."""
    return (text[0] + " " * MIN_BYTES + text[1:]).encode()


def bits(array: np.ndarray) -> list[int]:
    return np.ascontiguousarray(array, dtype=np.float64).view(np.int64).ravel().tolist()


def integer_past_64_bits(text: str) -> bool:
    return not any(c in text for c in ".eE") and not -(2**63) <= int(text) < 2**64


@settings(max_examples=400, deadline=None)
@given(
    st.lists(number_texts, min_size=WIDTH, max_size=WIDTH * 40).map(lambda t: t[: len(t) // WIDTH * WIDTH])
)
def test_numbers_get_the_bits_orjson_gives(texts: list[str]) -> None:
    rows = ", ".join(f"[{', '.join(texts[i : i + WIDTH])}]" for i in range(0, len(texts), WIDTH))
    body = padded(f'{{"instances": [{rows}]}}')
    got = instance_rows(body, WIDTH, 400)
    try:
        expected = np.array(orjson.loads(body)["instances"], dtype=np.float64)
    except orjson.JSONDecodeError:  # 1e400: orjson refuses it, and so does simdjson
        assert got is None
        return
    if any(map(integer_past_64_bits, texts)):  # orjson reads it as a float; simdjson refuses it
        assert got is None
        return
    assert got is not None
    assert got.shape == expected.shape
    assert bits(got) == bits(expected)


ROW = "[1.5, -2, 3e-5]"
MANY = ", ".join([ROW] * 60)


@pytest.mark.parametrize(
    "text",
    [
        f'{{"instances": [{MANY}, [1, 2]]}}',  # ragged
        f'{{"instances": [{MANY}, [1, [2, 3]], [4, []]]}}',  # nested, the same number count in all
        f'{{"instances": [{MANY}, 5, [1, [2, 3, 4]]]}}',  # a bare number, brackets and count as many
        f'{{"instances": [{MANY}, [1, 2, [3]]]}}',  # a one-number array where a number belongs
        f'{{"instances": [{MANY}, [1, null, 3]]}}',
        f'{{"instances": [{MANY}, [1, "2", 3]]}}',
        f'{{"instances": [{MANY}, [1, true, 3]]}}',
        f'{{"instances": [{MANY}, {{"a": 1, "b": 2, "c": 3}}]}}',
        f'{{"instances": [{MANY}], "other": 1}}',
        f'{{"instances": [{MANY}], "instances": [{ROW}]}}',  # orjson keeps the last one
        f'{{"instances": [{MANY}, [1, 2, 18446744073709551616]]}}',
        f'{{"instances": [{MANY}, [1, 2, 3]]',  # malformed
        f'{{"instances": [{", ".join([ROW] * 401)}]}}',  # past max_rows
        '{"instances": []}',
        f"[{MANY}]",
        f'{{"instances": [{MANY}, [1, 2, "\\ud800"]]}}',
    ],
)
def test_any_other_body_gets_none(text: str) -> None:
    assert instance_rows(padded(text), WIDTH, 400) is None


def test_small_bodies_are_left_to_orjson() -> None:
    body = f'{{"instances": [{ROW}]}}'.encode()
    assert len(body) < MIN_BYTES
    assert instance_rows(body, WIDTH, 400) is None
    assert instance_rows(padded(body.decode()), WIDTH, 400) is not None


cells = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**64), 2**64),
    st.none(),
    st.booleans(),
    st.just("x"),
    st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=2),
)


@dataclass(frozen=True)
class Refused:
    status: int
    problems: list[dict[str, Any]]


def answer(call: Any) -> Any:
    try:
        return call()
    except ClientError as refused:
        return Refused(refused.status, refused.problems)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.lists(cells, min_size=2, max_size=4), min_size=1, max_size=60))
def test_predict_answers_as_the_orjson_path_does(rows: list[list[Any]]) -> None:
    """Whatever the rows, the parser (dense path first) gives the exact path's batch or refusal."""
    body = padded(json.dumps({"instances": rows}))  # stdlib: orjson cannot write ints past 64 bits
    got = answer(lambda: PARSER.parse(body))
    expected = answer(lambda: PARSER._exact(orjson.loads(body)))
    if isinstance(expected, Refused):
        assert got == expected
    else:
        assert not isinstance(got, Refused)
        assert bits(got.numeric) == bits(expected.numeric)
        assert (got.rows, got.missing, got.unknown) == (expected.rows, expected.missing, expected.unknown)


def test_a_value_past_the_bound_is_refused_by_row_and_field() -> None:
    body = padded('{"instances": [' + ", ".join([ROW] * 50) + ", [1, 2, 1e300]]}")
    with pytest.raises(ClientError) as refused:
        PARSER.parse(body)
    assert refused.value.problems[0]["row"] == 50
    assert refused.value.problems[0]["field"] == "c"


@pytest.fixture(scope="module")
def model(default_artifacts: Artifacts) -> ServedModel:
    return load_model(default_artifacts.settings())


def v2_body(
    model: ServedModel, rows: int, datatype: str = "FP64", nested: bool = False, **extra: Any
) -> bytes:
    width = len(model.parser.features)
    values = [[(r * width + c) / 7 for c in range(width)] for r in range(rows)]
    data = values if nested else [v for row in values for v in row]
    tensor = {"name": "input-0", "shape": [rows, width], "datatype": datatype, "data": data}
    return orjson.dumps({"id": "a[b", "inputs": [tensor], **extra})


def test_v2_float_data_becomes_an_array_and_the_rest_is_orjsons(model: ServedModel) -> None:
    body = v2_body(model, 40, parameters={"note": "[x]", "n": 1}, outputs=[{"name": "label"}])
    got = v2_request(body, FLOAT_TYPES)
    expected = orjson.loads(body)
    assert got is not None
    data = got["inputs"][0].pop("data")
    assert isinstance(data, np.ndarray)
    assert bits(data) == bits(np.array(expected["inputs"][0].pop("data"), dtype=np.float64))
    assert got == expected


@pytest.mark.parametrize(
    "body",
    [
        lambda m: v2_body(m, 40).replace(b",0.14285714285714285,", b",[0.14285714285714285],", 1),
        lambda m: v2_body(m, 40, nested=True).replace(b"[0.0,", b"[[0.0],", 1).replace(b"]]", b"]]]", 1),
        lambda m: v2_body(m, 40, parameters={"note": "\\u005b"}),  # an escape: brackets cannot be counted
        lambda m: v2_body(m, 40)[:-1] + b', "id": "again"}',  # a key twice
        lambda m: v2_body(m, 40)[:-5],  # malformed
    ],
)
def test_v2_bodies_it_is_not_sure_of_get_none(model: ServedModel, body: Any) -> None:
    assert v2_request(body(model), FLOAT_TYPES) is None


@pytest.mark.parametrize(
    "edit",
    [
        lambda doc: doc,  # nested as the shape says
        lambda doc: doc["inputs"][0].update(shape=[30, 40]),  # the transpose: same count, other rows
        lambda doc: doc["inputs"][0]["data"][3].pop(),  # a short row
        lambda doc: doc["inputs"][0]["data"].__setitem__(5, 1.5),  # a number among the rows
        lambda doc: doc["inputs"][0].update(shape=[1200]),  # nested data for a rank-1 shape
    ],
)
def test_v2_nested_data_decodes_as_from_orjson(model: ServedModel, edit: Any) -> None:
    codec = V2Codec(model, "lockstep")
    doc = orjson.loads(v2_body(model, 40, nested=True))
    edit(doc)
    body = orjson.dumps(doc)
    dense = v2_request(body, FLOAT_TYPES)
    expected = answer(lambda: codec.decode(orjson.loads(body)))
    if dense is None:
        assert isinstance(expected, Refused)  # only bodies the orjson path refuses are left to it
        return
    got = answer(lambda: codec.decode(dense))
    if isinstance(expected, Refused):
        assert got == expected
    else:
        assert bits(got[0].numeric) == bits(expected[0].numeric)


def test_v2_integer_data_stays_python_integers(model: ServedModel) -> None:
    body = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [300], "datatype": "INT64", "data": list(range(300))}]}
    )
    got = v2_request(body, FLOAT_TYPES)
    assert got is not None
    assert got == orjson.loads(body)


@pytest.mark.parametrize(
    ("rows", "datatype", "shape"),
    [
        (40, "FP64", None),
        (40, "FP32", None),
        (40, "FP16", None),
        (40, "FP64", [41, 30]),
        (40, "FP64", [40, 29]),
    ],
)
def test_v2_decodes_as_from_orjson(
    model: ServedModel, rows: int, datatype: str, shape: list[int] | None
) -> None:
    """The codec's batch or refusal is the same whichever parse the body had."""
    codec = V2Codec(model, "lockstep")
    doc = orjson.loads(v2_body(model, rows, datatype))
    if shape is not None:
        doc["inputs"][0]["shape"] = shape
    body = orjson.dumps(doc)
    dense = v2_request(body, FLOAT_TYPES)
    assert dense is not None
    got = answer(lambda: codec.decode(dense))
    expected = answer(lambda: codec.decode(orjson.loads(body)))
    if isinstance(expected, Refused):
        assert got == expected
    else:
        assert bits(got[0].numeric) == bits(expected[0].numeric)
        assert got[1] == expected[1]
    if datatype == "FP16":  # 65504 is FP16's largest value
        doc["inputs"][0]["data"][7] = 70000.0
        body = orjson.dumps(doc)
        dense = v2_request(body, FLOAT_TYPES)
        assert dense is not None
        refused = answer(lambda: codec.decode(dense))
        assert isinstance(refused, Refused)
        assert refused == answer(lambda: codec.decode(orjson.loads(body)))


def test_rows_that_are_objects_or_strings_of_the_right_length_get_none() -> None:
    for row in ('{"a": 1, "b": 2, "c": 3}', '"abc"'):
        assert instance_rows(padded(f'{{"instances": [{MANY}, {row}]}}'), WIDTH, 400) is None


def test_named_rows_are_not_given_to_the_dense_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """A body with more strings than "instances" is not a positional batch: it is parsed once, by orjson."""
    calls: list[bytes] = []
    monkeypatch.setattr("api.validation.instance_rows", lambda body, *_: calls.append(body))
    named = padded('{"instances": [' + ", ".join(['{"a": 1, "b": 2, "c": 3}'] * 50) + "]}")
    assert PARSER.parse(named).rows == 50
    assert calls == []
    PARSER.parse(padded(f'{{"instances": [{MANY}]}}'))
    assert len(calls) == 1


@pytest.mark.parametrize("kernel", ["fallback", "westmere", "haswell"])
def test_numbers_get_the_same_bits_with_every_simdjson_kernel(kernel: str, tmp_path: Path) -> None:
    """simdjson picks its code by CPU: the bit-for-bit property holds for the portable kernel, SSE4.2
    and AVX2 alike (forced one by one; an unknown name fails, so the variable is read)."""
    import os
    import subprocess
    import sys

    test = f"{__file__}::test_numbers_get_the_bits_orjson_gives"
    env = {**os.environ, "SIMDJSON_FORCE_IMPLEMENTATION": kernel}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path), test],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
