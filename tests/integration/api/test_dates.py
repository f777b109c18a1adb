"""A model with a `date` feature (ISO 8601 text), trained by the real pipeline, on both serving
paths: requests carry the date's text, the service computes its parts as training did, and a value
that is not a date is a located 4xx on /predict and V2 alike."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from api.app import create_app
from harness import Artifacts
from tests.api.support import TestClient, check_error_body, served_agree_with_in_process, split_rows

pytestmark = pytest.mark.slow  # each family runs the whole pipeline once per session

INFER = "/v2/models/lockstep/infer"
PATHS = {"dated-forest": "onnx", "dated-exact": "sklearn"}


@pytest.fixture(scope="module", params=list(PATHS))
def served(
    request: pytest.FixtureRequest, trained: Callable[[str], Artifacts]
) -> Iterator[tuple[str, Artifacts, TestClient]]:
    artifacts = trained(request.param)
    with TestClient(create_app(artifacts.settings())) as client:
        yield request.param, artifacts, client


def row(**changes: Any) -> dict[str, Any]:
    return {"visited": "2024-03-01", "temperature": 12.5, "station": "a", **changes}


def predict(client: TestClient, *rows: dict[str, Any]) -> list[dict[str, Any]]:
    reply = client.post("/predict", json={"instances": list(rows)})
    assert reply.status_code == 200, reply.text
    predictions: list[dict[str, Any]] = reply.json()["predictions"]
    return predictions


def test_the_model_lists_its_date_takes_its_path_and_serves_as_scikit_learn_predicts(
    served: tuple[str, Artifacts, TestClient],
) -> None:
    name, artifacts, client = served
    doc = client.get("/model").json()
    assert doc["serving"]["path"] == PATHS[name]
    assert {f["name"]: f["kind"] for f in doc["features"]} == {
        "visited": "date",
        "temperature": "numeric",
        "station": "categorical",
    }
    served_agree_with_in_process(client, artifacts)  # requests carry the dates' text


def test_an_offset_is_the_same_moment_in_utc(served: tuple[str, Artifacts, TestClient]) -> None:
    _, _, client = served
    same = predict(
        client,
        row(visited="2024-07-06T12:00:00+02:00"),
        row(visited="2024-07-06T10:00:00Z"),
        row(visited=" 2024-07-06 10:00 "),
    )
    assert same[0] == same[1] == same[2]


def test_v2_bytes_dates_agree_with_predict(served: tuple[str, Artifacts, TestClient]) -> None:
    _, artifacts, client = served
    _, rows = split_rows(artifacts)
    rows[0]["visited"] = None
    inputs = [
        {
            "name": "visited",
            "shape": [len(rows), 1],
            "datatype": "BYTES",
            "data": [r["visited"] for r in rows],
        },
        {
            "name": "temperature",
            "shape": [len(rows)],
            "datatype": "FP64",
            "data": [r["temperature"] for r in rows],
        },
        {"name": "station", "shape": [len(rows)], "datatype": "BYTES", "data": [r["station"] for r in rows]},
    ]
    reply = client.post(INFER, json={"inputs": inputs})
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    predictions = predict(client, *rows)
    assert outputs["label"]["data"] == [p["label"] for p in predictions]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("01/03/2024", "must be an ISO 8601 date such as 2024-03-01"),
        ("2023-02-30", "must be an ISO 8601 date such as 2024-03-01"),
        ("2024-03-01T25:00", "must be an ISO 8601 date such as 2024-03-01"),
        (20240301, "must be a string (an ISO 8601 date) or null, got number"),
        (["2024-03-01"], "must be a string (an ISO 8601 date) or null, got array"),
    ],
)
def test_a_value_that_is_not_a_date_is_a_located_422(
    served: tuple[str, Artifacts, TestClient], value: Any, message: str
) -> None:
    _, _, client = served
    for instances in ([row(), row(visited=value)], [list(row().values()), list(row(visited=value).values())]):
        reply = client.post("/predict", json={"instances": instances})
        check_error_body(reply, 422, 1, "visited")
        assert message in reply.json()["error"]["errors"][0]["message"]


def test_v2_refuses_a_value_that_is_not_a_date_naming_the_tensor(
    served: tuple[str, Artifacts, TestClient],
) -> None:
    _, _, client = served

    def infer(visited: dict[str, Any]) -> Any:
        inputs = [
            {"name": "visited", "shape": [2], **visited},
            {"name": "temperature", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
            {"name": "station", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
        ]
        return client.post(INFER, json={"inputs": inputs})

    reply = infer({"datatype": "BYTES", "data": ["2024-03-01", "yesterday"]})
    assert reply.status_code == 400, reply.text
    assert "data[1] must be an ISO 8601 date" in reply.json()["error"]
    assert "yesterday" not in reply.text  # the client's value is not echoed
    reply = infer({"datatype": "FP64", "data": [1.0, 2.0]})
    assert reply.status_code == 400, reply.text
    assert "is a date: datatype must be BYTES, got FP64" in reply.json()["error"]


def test_a_missing_date_is_served_and_counted_as_missing_not_as_an_unknown_category(
    served: tuple[str, Artifacts, TestClient],
) -> None:
    _, _, client = served

    def counted(metric: str) -> float:
        found = re.search(rf'{metric}_total\{{feature="visited"\}} (\S+)', client.get("/metrics").text)
        return float(found.group(1)) if found else 0.0

    before = counted("lockstep_missing_value"), counted("lockstep_unknown_category")
    predict(client, row(visited=None), row())
    after = counted("lockstep_missing_value"), counted("lockstep_unknown_category")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 0)


def test_openapi_types_the_date_as_an_iso_8601_string(served: tuple[str, Artifacts, TestClient]) -> None:
    _, _, client = served
    schema = client.get("/openapi.json").json()["components"]["schemas"]["NamedInstance"]["properties"][
        "visited"
    ]
    assert schema["type"] == ["string", "null"]
    assert re.fullmatch(schema["pattern"], "2024-03-01T13:45:00Z")
    assert not re.fullmatch(schema["pattern"], "01/03/2024")
    assert "visited:days, visited:month, visited:weekday" in schema["description"]
