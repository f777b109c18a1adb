"""api.predict: POST /predict through TestClient (named and positional rows, both ways
in), the response spliced from fragments byte for byte what orjson writes for the objects, and rows a
model cannot score refused by index."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import orjson
import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the dev lock
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.predict import _prediction_objects, encode_predictions
from api.runners import Scores
from contract import load_verified_pickle
from harness import DEFAULT
from tests.api.support import TestClient

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
