"""Every class of bad input gets a 4xx JSON body naming the row and field; never a 5xx.

The table runs against the default model (numeric columns); the type errors of categorical
columns run against a model trained on the penguins data (tests/api/test_families.py)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from api.app import create_app
from harness import make_settings
from tests.api.support import TestClient

Body = Callable[[dict[str, Any], list[str]], bytes]
JSON = {"Content-Type": "application/json"}
SMALL_ROWS, SMALL_BODY = 5, 4096


def named(change: Callable[[dict[str, Any]], object], row_count: int = 1, bad_row: int = 0) -> Body:
    """A batch of example rows where row `bad_row` is passed through `change` (which edits in place)."""

    def build(example: dict[str, Any], names: list[str]) -> bytes:
        rows: list[Any] = [dict(example) for _ in range(row_count)]
        change(rows[bad_row])
        return orjson.dumps({"instances": rows})

    return build


def raw(text: str) -> Body:
    """A body given verbatim ({EX} is replaced by the example's first feature name)."""
    return lambda example, names: text.replace("{EX}", names[0]).encode()


def raw_value(token: str) -> Body:
    """The example row with its first feature's value replaced by a raw JSON token (e.g. NaN)."""

    def build(example: dict[str, Any], names: list[str]) -> bytes:
        text = orjson.dumps({"instances": [example]}).decode()
        first = orjson.dumps({names[0]: example[names[0]]}).decode()[1:-1]
        return text.replace(first, f'"{names[0]}":{token}').encode()

    return build


def positional(make_row: Callable[[list[float]], list[Any]]) -> Body:
    return lambda example, names: orjson.dumps({"instances": [make_row([example[n] for n in names])]})


FIRST = "<first feature>"  # placeholder resolved to the real first feature name

# (id, body, headers, method, status, row, field): the error list must contain (row, field).
CASES: list[tuple[str, Body, dict[str, str], str, int, int | None, str | None]] = [
    ("string-value", named(lambda r: r.update({next(iter(r)): "12.5"})), JSON, "POST", 422, 0, FIRST),
    ("boolean-value", named(lambda r: r.update({next(iter(r)): True})), JSON, "POST", 422, 0, FIRST),
    ("array-value", named(lambda r: r.update({next(iter(r)): [1.0]})), JSON, "POST", 422, 0, FIRST),
    ("object-value", named(lambda r: r.update({next(iter(r)): {"v": 1}})), JSON, "POST", 422, 0, FIRST),
    ("missing-feature", named(lambda r: r.pop(next(iter(r)))), JSON, "POST", 422, 0, FIRST),
    (
        "unknown-feature",
        named(lambda r: r.update({"tumour_colour": 1.0})),
        JSON,
        "POST",
        422,
        0,
        "tumour_colour",
    ),
    ("bad-row-in-batch", named(lambda r: r.pop(next(iter(r))), 5, 3), JSON, "POST", 422, 3, FIRST),
    ("nan", raw_value("NaN"), JSON, "POST", 422, 0, FIRST),
    ("infinity", raw_value("Infinity"), JSON, "POST", 422, 0, FIRST),
    ("minus-infinity", raw_value("-Infinity"), JSON, "POST", 422, 0, FIRST),
    ("overflowing-float", raw_value("1e999"), JSON, "POST", 422, 0, FIRST),
    ("overflowing-int", raw_value("1" + "0" * 400), JSON, "POST", 422, 0, FIRST),
    ("beyond-value-bound", named(lambda r: r.update(dict.fromkeys(r, 1e308))), JSON, "POST", 422, 0, FIRST),
    ("positional-too-short", positional(lambda row: row[:-1]), JSON, "POST", 422, 0, None),
    ("positional-too-long", positional(lambda row: [*row, 1.0]), JSON, "POST", 422, 0, None),
    ("positional-string", positional(lambda row: ["x", *row[1:]]), JSON, "POST", 422, 0, FIRST),
    ("row-not-object-or-array", raw('{"instances": ["row"]}'), JSON, "POST", 422, 0, None),
    ("empty-batch", raw('{"instances": []}'), JSON, "POST", 422, None, "instances"),
    ("instances-not-array", raw('{"instances": {"{EX}": 1}}'), JSON, "POST", 422, None, "instances"),
    ("instances-missing", raw('{"rows": []}'), JSON, "POST", 422, None, "instances"),
    ("unknown-top-level-field", raw('{"instances": [], "extra": 1}'), JSON, "POST", 422, None, "extra"),
    ("body-not-object", raw("[1, 2, 3]"), JSON, "POST", 422, None, None),
    ("malformed-json", raw('{"instances": [1, 2'), JSON, "POST", 400, None, None),
    ("trailing-comma", raw('{"instances": [],}'), JSON, "POST", 400, None, None),
    ("empty-body", raw(""), JSON, "POST", 400, None, None),
    ("invalid-utf8", lambda e, n: b'{"instances": ["\xff\xfe"]}', JSON, "POST", 400, None, None),
    ("deeply-nested", raw("[" * 100_000 + "]" * 100_000), JSON, "POST", 400, None, None),
    ("text-plain", named(lambda r: None), {"Content-Type": "text/plain"}, "POST", 415, None, "Content-Type"),
    (
        "form-encoded",
        raw("a=1"),
        {"Content-Type": "application/x-www-form-urlencoded"},
        "POST",
        415,
        None,
        "Content-Type",
    ),
    ("no-content-type", named(lambda r: None), {}, "POST", 415, None, "Content-Type"),
    ("get-predict", raw(""), {}, "GET", 405, None, None),
    ("put-predict", named(lambda r: None), JSON, "PUT", 405, None, None),
    ("delete-predict", raw(""), {}, "DELETE", 405, None, None),
    ("post-healthz", raw("{}"), JSON, "POST", 405, None, None),
]


def check_error_body(reply: Any, status: int, row: int | None, field: str | None) -> None:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    assert "Traceback" not in reply.text
    error = reply.json()["error"]
    assert error["status"] == status
    assert error["message"]
    assert error["request_id"] == reply.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", error["request_id"])  # generated: these requests send none
    located = [(e["row"], e["field"]) for e in error["errors"]]
    assert (row, field) in located, located


@pytest.mark.parametrize(
    ("body", "headers", "method", "status", "row", "field"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_input_is_a_located_4xx(
    client: TestClient,
    example: dict[str, Any],
    feature_names: list[str],
    body: Body,
    headers: dict[str, str],
    method: str,
    status: int,
    row: int | None,
    field: str | None,
) -> None:
    path = "/healthz" if method == "POST" and body(example, feature_names) == b"{}" else "/predict"
    reply = client.request(method, path, content=body(example, feature_names), headers=headers)
    check_error_body(reply, status, row, feature_names[0] if field == FIRST else field)
    # The server keeps serving after every refusal.
    assert client.post("/predict", json={"instances": [example]}).status_code == 200


def test_method_not_allowed_names_the_allowed_method(client: TestClient) -> None:
    reply = client.get("/predict")
    assert reply.headers["allow"] == "POST"


def test_every_problem_is_listed_up_to_a_bound(client: TestClient, example: dict[str, Any]) -> None:
    rows = [{**example, "unknown": 1.0} for _ in range(50)]
    error = client.post("/predict", json={"instances": rows}).json()["error"]
    assert [e["row"] for e in error["errors"]] == list(range(20))


def test_a_key_with_a_lone_surrogate_is_refused_at_parsing(
    client: TestClient, example: dict[str, Any]
) -> None:
    body = orjson.dumps({"instances": [example]})[: -len(b"}]}")] + b', "\\ud800x": 1}]}'
    reply = client.post("/predict", content=body, headers=JSON)
    assert reply.status_code == 400
    assert "surrogate" in reply.json()["error"]["message"]


@pytest.fixture(scope="module")
def small_client() -> Iterator[TestClient]:
    """An app with tiny limits, so limit violations are cheap to provoke."""
    with TestClient(create_app(make_settings(max_rows=SMALL_ROWS, max_body_bytes=SMALL_BODY))) as test_client:
        yield test_client


def test_more_rows_than_the_limit(small_client: TestClient, feature_names: list[str]) -> None:
    rows = [[1] * len(feature_names)] * (SMALL_ROWS + 1)
    reply = small_client.post("/predict", json={"instances": rows})
    check_error_body(reply, 422, None, "instances")
    assert str(SMALL_ROWS) in reply.json()["error"]["message"]


def test_body_over_the_limit_is_413(small_client: TestClient) -> None:
    reply = small_client.post("/predict", content=b" " * (SMALL_BODY + 1), headers=JSON)
    check_error_body(reply, 413, None, None)


def test_chunked_body_over_the_limit_is_413(small_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b" " * 1024

    reply = small_client.post("/predict", content=chunks(), headers=JSON)
    check_error_body(reply, 413, None, None)
