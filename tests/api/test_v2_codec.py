"""api.v2_codec through the V2 infer endpoint against the default model: integer datatypes and null
as a missing value, and a table of bad V2 requests that must each get a 4xx naming what is wrong,
never a 5xx."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.api.support import INFER, TestClient, matrix, per_feature


def test_infer_takes_integer_datatypes_and_null_as_a_missing_value(
    client: TestClient, example: dict[str, Any]
) -> None:
    names = list(example)
    as_int = [
        dict(t, datatype="INT64", data=[round(v) for v in t["data"]]) for t in per_feature([example], names)
    ]
    assert client.post(INFER, json={"inputs": as_int}).status_code == 200
    as_int[0]["data"] = [None]  # a whole tensor of gaps: imputed, not an error
    assert client.post(INFER, json={"inputs": as_int}).status_code == 200, as_int[0]
    gap = [matrix([example], names)]
    gap[0]["data"][0] = None
    reply = client.post(INFER, json={"inputs": gap})
    assert reply.status_code == 200, reply.text
    assert f'lockstep_missing_value_total{{feature="{names[0]}"}}' in client.get("/metrics").text


Change = Callable[[dict[str, Any], list[str]], Any]


def request_with(change: Callable[[dict[str, Any]], object]) -> Change:
    """A valid per-feature request for two example rows, passed through `change` (edits in place)."""

    def build(example: dict[str, Any], names: list[str]) -> Any:
        request: dict[str, Any] = {"inputs": per_feature([example, example], names)}
        change(request)
        return request

    return build


def matrix_with(change: Callable[[dict[str, Any]], object]) -> Change:
    def build(example: dict[str, Any], names: list[str]) -> Any:
        tensor = matrix([example, example], names)
        change(tensor)
        return {"inputs": [tensor]}

    return build


def first(change: Callable[[dict[str, Any]], object]) -> Callable[[dict[str, Any]], object]:
    return lambda request: change(request["inputs"][0])


def nan_token(token: str) -> Change:
    """A raw body whose first value is a non-JSON token (NaN, Infinity) or a huge literal."""

    def build(example: dict[str, Any], names: list[str]) -> Any:
        tensor = matrix([example], names)
        tensor["data"][0] = 123456.75
        return orjson.dumps({"inputs": [tensor]}).replace(b"123456.75", token.encode())

    return build


# (id, request or raw body, path, status, words the message must contain)
BAD: list[tuple[str, Change, str, int, str]] = [
    ("shape-too-big-for-data", request_with(first(lambda t: t.update(shape=[3, 1]))), INFER, 400, "shape"),
    ("shape-negative", request_with(first(lambda t: t.update(shape=[-2, 1]))), INFER, 400, "shape"),
    ("shape-rank-3", request_with(first(lambda t: t.update(shape=[2, 1, 1]))), INFER, 400, "shape"),
    (
        "rows-disagree",
        request_with(lambda r: r["inputs"][1].update(shape=[1, 1], data=[1.0])),
        INFER,
        400,
        "[2]",
    ),
    (
        "zero-rows",
        request_with(lambda r: [t.update(shape=[0, 1], data=[]) for t in r["inputs"]]),
        INFER,
        400,
        "rows",
    ),
    (
        "nesting-disagrees",
        request_with(first(lambda t: t.update(shape=[1, 2], data=[[1.0], [2.0]]))),
        INFER,
        400,
        "nesting",
    ),
    ("unknown-datatype", request_with(first(lambda t: t.update(datatype="FP128"))), INFER, 400, "FP128"),
    (
        "bytes-for-numeric",
        request_with(first(lambda t: t.update(datatype="BYTES", data=["1", "2"]))),
        INFER,
        400,
        "BYTES",
    ),
    (
        "bool-for-numeric",
        request_with(first(lambda t: t.update(datatype="BOOL", data=[True, False]))),
        INFER,
        400,
        "BOOL",
    ),
    ("string-in-fp64", request_with(first(lambda t: t.update(data=["1.5", 2.0]))), INFER, 400, '"1.5"'),
    ("bool-in-fp64", request_with(first(lambda t: t.update(data=[True, 2.0]))), INFER, 400, "true"),
    (
        "float-in-int64",
        request_with(first(lambda t: t.update(datatype="INT64", data=[1.5, 2]))),
        INFER,
        400,
        "integers",
    ),
    (
        "out-of-uint8",
        request_with(first(lambda t: t.update(datatype="UINT8", data=[300, 2]))),
        INFER,
        400,
        "UINT8",
    ),
    ("too-large", request_with(first(lambda t: t.update(data=[1e300, 2.0]))), INFER, 400, "within"),
    (
        "unknown-input",
        request_with(lambda r: r["inputs"].append(dict(r["inputs"][0], name="nope"))),
        INFER,
        400,
        "nope",
    ),
    ("missing-input", request_with(lambda r: r["inputs"].pop()), INFER, 400, "missing input"),
    (
        "duplicate-input",
        request_with(lambda r: r["inputs"].__setitem__(1, r["inputs"][0])),
        INFER,
        400,
        "twice",
    ),
    ("no-name", request_with(first(lambda t: t.pop("name"))), INFER, 400, "'name'"),
    ("no-data", request_with(first(lambda t: t.pop("data"))), INFER, 400, "'data'"),
    ("data-not-array", request_with(first(lambda t: t.update(data="AAAA"))), INFER, 400, "array"),
    ("no-inputs", lambda e, n: {"outputs": [{"name": "label"}]}, INFER, 400, "inputs"),
    ("unknown-output", request_with(lambda r: r.update(outputs=[{"name": "proba"}])), INFER, 400, "proba"),
    ("unknown-top-level", request_with(lambda r: r.update(instances=[])), INFER, 400, "instances"),
    ("id-not-string", request_with(lambda r: r.update(id=42)), INFER, 400, "id"),
    ("matrix-wrong-width", matrix_with(lambda t: t.update(shape=[1, len(t["data"])])), INFER, 400, "shape"),
    ("matrix-nan-token", nan_token("NaN"), INFER, 400, "finite"),
    ("matrix-infinity-token", nan_token("-Infinity"), INFER, 400, "finite"),
    ("matrix-huge-literal", nan_token("1e999"), INFER, 400, "finite"),
    ("not-json", lambda e, n: b'{"inputs": [', INFER, 400, "malformed"),
    ("not-an-object", lambda e, n: [1, 2], INFER, 400, "object"),
    ("wrong-model", request_with(lambda r: None), "/v2/models/other/infer", 404, "other"),
    ("wrong-version", request_with(lambda r: None), "/v2/models/lockstep/versions/v0/infer", 404, "v0"),
]


@pytest.mark.parametrize(("build", "path", "status", "words"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_v2_request_gets_a_4xx_naming_the_problem(
    client: TestClient, example: dict[str, Any], build: Change, path: str, status: int, words: str
) -> None:
    made = build(example, list(example))
    body = made if isinstance(made, bytes) else orjson.dumps(made)
    reply = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == status, reply.text
    error = reply.json()
    assert isinstance(error["error"], str)  # the protocol's error object
    assert words in error["error"], error["error"]
    assert error["request_id"] == reply.headers["x-request-id"]
