"""api.predict: POST /predict through TestClient (named and positional rows, both ways in), the
response spliced from fragments byte for byte what orjson writes for the objects, rows a model cannot
score refused by index; and every class of bad input a 4xx JSON body naming the row and field, never a
5xx (the categorical columns' type errors: tests/integration/api/test_families.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import orjson
import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the dev lock
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.app import create_app
from api.predict import _prediction_objects, encode_predictions
from api.runners import Scores
from contract import load_verified_pickle
from harness import DEFAULT, make_settings
from tests.api.support import TestClient, check_error_body

numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, 1e-5, 5e-324, 1 / 3, 1e16, 0.9999999999999999]),
)
class_names = st.lists(st.text(min_size=1, max_size=6), min_size=2, max_size=4, unique=True)


def objects(version: str, classes: tuple[str, ...], scores: Scores) -> bytes:
    return orjson.dumps({"model_version": version, "predictions": _prediction_objects(classes, scores)})


@settings(max_examples=200, deadline=None)
@given(class_names, st.data())
def test_classifier_answers_are_what_orjson_writes(names: list[str], data: st.DataObject) -> None:
    classes = tuple(names)
    rows = data.draw(st.integers(1, 40))
    probabilities = data.draw(
        st.lists(
            st.lists(numbers, min_size=len(classes), max_size=len(classes)), min_size=rows, max_size=rows
        )
    )
    labels = data.draw(st.lists(st.integers(0, len(classes) - 1), min_size=rows, max_size=rows))
    scores = Scores(labels=labels, probabilities=np.array(probabilities, dtype=np.float64))
    assert encode_predictions('v"1', classes, scores) == objects('v"1', classes, scores)


@settings(max_examples=100, deadline=None)
@given(st.lists(numbers, min_size=1, max_size=40))
def test_regression_answers_are_what_orjson_writes(values: list[float]) -> None:
    scores = Scores(values=np.array(values, dtype=np.float64))
    assert encode_predictions("v", (), scores) == objects("v", (), scores)


@pytest.mark.parametrize("rows", [1, 2, 1000])
def test_answers_parse_to_one_prediction_per_row(rows: int) -> None:
    scores = Scores(labels=[1] * rows, probabilities=np.array([[0.25, 0.75]] * rows))
    document = orjson.loads(encode_predictions("v", ("a", "b"), scores))
    assert document["predictions"] == [{"label": "b", "probabilities": {"a": 0.25, "b": 0.75}}] * rows


def test_rows_a_model_cannot_score_are_refused_by_index() -> None:
    from api.errors import ClientError
    from api.model import check_finite
    from api.runners import Scores

    nan, inf = float("nan"), float("inf")
    for scores in (
        Scores(labels=[1, 0, 0, 0], probabilities=np.array([[0.2, 0.8], [nan, nan], [0.5, 0.5], [inf, 0.0]])),
        Scores(values=np.array([1.0, nan, 2.0, -inf])),
    ):
        with pytest.raises(ClientError) as refused:
            check_finite(scores)
        assert refused.value.status == 422
        assert [p["row"] for p in refused.value.problems] == [1, 3]


def test_predict_named_instance(
    client: TestClient, example: dict[str, Any], metadata: dict[str, Any]
) -> None:
    reply = client.post("/predict", json={"instances": [example]})
    assert reply.status_code == 200
    body = reply.json()
    assert body["model_version"] == hashlib.md5(DEFAULT.model.read_bytes()).hexdigest()
    [prediction] = body["predictions"]
    assert prediction["label"] in metadata["classes"]
    probabilities = prediction["probabilities"]
    assert list(probabilities) == metadata["classes"]
    tolerance = DEFAULT.serving_document()["gate"]["tolerance"]
    # By value: what scikit-learn itself says for this row, within the export gate's tolerance.
    model, _ = load_verified_pickle(DEFAULT.model, DEFAULT.lock)  # md5 before unpickling
    frame = pd.DataFrame([example])
    expected = dict(zip(map(str, model.classes_), model.predict_proba(frame)[0], strict=True))
    assert list(probabilities) == list(expected)
    for label, value in expected.items():
        assert probabilities[label] == pytest.approx(value, abs=tolerance)
    assert prediction["label"] == str(model.predict(frame)[0])


def test_positional_and_named_rows_agree(
    client: TestClient, example: dict[str, Any], feature_names: list[str]
) -> None:
    named = client.post("/predict", json={"instances": [example]}).json()
    positional = client.post("/predict", json={"instances": [[example[n] for n in feature_names]]}).json()
    assert named == positional


def test_named_features_in_any_order(client: TestClient, example: dict[str, Any]) -> None:
    shuffled = dict(reversed(list(example.items())))
    assert (
        client.post("/predict", json={"instances": [shuffled]}).json()
        == client.post("/predict", json={"instances": [example]}).json()
    )


def test_integers_are_numbers(client: TestClient, example: dict[str, Any]) -> None:
    as_ints = {name: round(v) if isinstance(v, float) else v for name, v in example.items()}
    assert client.post("/predict", json={"instances": [as_ints]}).status_code == 200


def test_batch_mixing_named_and_positional_rows(
    client: TestClient, example: dict[str, Any], feature_names: list[str]
) -> None:
    rows: list[Any] = [example, [example[n] for n in feature_names]] * 3
    body = client.post("/predict", json={"instances": rows}).json()
    assert len(body["predictions"]) == 6
    assert all(p == body["predictions"][0] for p in body["predictions"])


def test_fastapi_route_and_lean_handler_answer_alike(
    example: dict[str, Any], feature_names: list[str]
) -> None:
    """POST /predict is answered by raw ASGI; the FastAPI route behind it must give the same answer."""
    from api.app import create_app
    from harness import make_settings

    app = create_app(make_settings())
    body = {"instances": [example, [example[n] for n in feature_names]]}
    bad = {"instances": [{"unknown": 1}]}
    with TestClient(app) as client:
        lean = [client.post("/predict", json=b) for b in (body, bad)]
        app.state.lean_routes.clear()
        routed = [client.post("/predict", json=b) for b in (body, bad)]
    for via_lean, via_fastapi in zip(lean, routed, strict=True):
        assert via_lean.status_code == via_fastapi.status_code
        assert via_lean.headers["content-type"] == via_fastapi.headers["content-type"]
        first, second = via_lean.json(), via_fastapi.json()
        if "error" in first:  # request ids differ by design
            first["error"]["request_id"] = second["error"]["request_id"] = None
        assert first == second


Body = Callable[[dict[str, Any], list[str]], bytes]


JSON = {"Content-Type": "application/json"}


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


SMALL_ROWS, SMALL_BODY = 5, 4096


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
