"""The Open Inference Protocol (V2) endpoints against the default model (all features numeric):
the protocol's own request and response shapes, agreement with /predict over the whole test split,
and a table of bad V2 requests that must each get a 4xx naming what is wrong, never a 5xx."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest

from harness import DEFAULT
from tests.api.support import TestClient
from tests.api.test_predictions_match_model import split_rows

INFER = "/v2/models/lockstep/infer"


def per_feature(rows: list[dict[str, Any]], names: list[str], shape1: bool = True) -> list[dict[str, Any]]:
    """One FP64 tensor per feature, [N, 1] (or [N]), flat data."""
    n = len(rows)
    return [
        {
            "name": name,
            "shape": [n, 1] if shape1 else [n],
            "datatype": "FP64",
            "data": [r[name] for r in rows],
        }
        for name in names
    ]


def matrix(rows: list[dict[str, Any]], names: list[str], nested: bool = False) -> dict[str, Any]:
    """One [N, F] FP64 tensor, flat (row-major) or nested."""
    values = [[r[name] for name in names] for r in rows]
    data = values if nested else [v for row in values for v in row]
    return {"name": "input-0", "shape": [len(rows), len(names)], "datatype": "FP64", "data": data}


def test_server_health_and_metadata_follow_the_protocol(client: TestClient, metadata: dict[str, Any]) -> None:
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    server = client.get("/v2").json()
    assert set(server) == {"name", "version", "extensions"}
    ready = client.get("/v2/models/lockstep/ready")
    assert ready.status_code == 200
    model = client.get("/v2/models/lockstep").json()
    version = client.get("/model").json()["model_version"]
    assert model["name"] == "lockstep"
    assert model["versions"] == [version]
    assert isinstance(model["platform"], str)
    assert [(i["name"], i["datatype"], i["shape"]) for i in model["inputs"]] == [
        (f["name"], "FP64", [-1, 1]) for f in metadata["features"]
    ]
    assert [(o["name"], o["datatype"]) for o in model["outputs"]] == [
        ("label", "BYTES"),
        ("probabilities", "FP64"),
    ]
    assert model["outputs"][1]["shape"] == [-1, len(metadata["classes"])]
    assert client.get(f"/v2/models/lockstep/versions/{version}").json() == model
    assert client.get(f"/v2/models/lockstep/versions/{version}/ready").status_code == 200


def test_infer_answers_the_protocols_response_shape(client: TestClient, example: dict[str, Any]) -> None:
    names = list(example)
    request = {"id": "42", "inputs": per_feature([example, example], names), "outputs": [{"name": "label"}]}
    reply = client.post(INFER, json=request)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == {"model_name", "model_version", "id", "outputs"}
    assert body["id"] == "42"  # echoed, as the protocol says
    assert body["model_name"] == "lockstep"
    assert body["model_version"] == client.get("/model").json()["model_version"]
    [label] = body["outputs"]  # only the requested output
    assert label["name"] == "label"
    assert label["datatype"] == "BYTES"
    assert label["shape"] == [2]
    assert len(label["data"]) == 2


@pytest.mark.parametrize(
    "inputs",
    [
        pytest.param(lambda rows, names: per_feature(rows, names), id="per-feature-[N,1]"),
        pytest.param(lambda rows, names: per_feature(rows, names, shape1=False), id="per-feature-[N]"),
        pytest.param(lambda rows, names: [matrix(rows, names)], id="matrix-flat"),
        pytest.param(lambda rows, names: [matrix(rows, names, nested=True)], id="matrix-nested"),
    ],
)
def test_infer_agrees_with_predict_over_the_test_split(
    client: TestClient, inputs: Callable[[list[dict[str, Any]], list[str]], list[dict[str, Any]]]
) -> None:
    _, rows = split_rows(DEFAULT)
    names = list(rows[0])
    reply = client.post(INFER, json={"inputs": inputs(rows, names)})
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    predictions = client.post("/predict", json={"instances": rows}).json()["predictions"]
    classes = list(predictions[0]["probabilities"])
    assert outputs["label"]["data"] == [p["label"] for p in predictions]
    assert outputs["probabilities"]["shape"] == [len(rows), len(classes)]
    probabilities = np.array(outputs["probabilities"]["data"]).reshape(len(rows), len(classes))
    expected = np.array([[p["probabilities"][c] for c in classes] for p in predictions])
    assert np.array_equal(probabilities, expected)  # the same runner on the same Batch: bit for bit


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


def test_infer_without_content_type_is_read_as_json(client: TestClient, example: dict[str, Any]) -> None:
    body = orjson.dumps({"inputs": [matrix([example], list(example))]})
    assert client.post(INFER, content=body).status_code == 200


def test_infer_is_counted_under_its_route(client: TestClient, example: dict[str, Any]) -> None:
    client.post(INFER, json={"inputs": [matrix([example], list(example))]})
    text = client.get("/metrics").text
    assert f'lockstep_http_requests_total{{method="POST",route="{INFER}",status="200"}}' in text


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


def test_unknown_model_metadata_and_readiness_are_404(client: TestClient) -> None:
    for path in ("/v2/models/other", "/v2/models/other/ready", "/v2/models/lockstep/versions/v0/ready"):
        reply = client.get(path)
        assert reply.status_code == 404, path
        assert "error" in reply.json()


def test_the_model_name_is_a_setting(example: dict[str, Any]) -> None:
    from api.app import create_app

    with TestClient(create_app(DEFAULT.settings(v2_model_name="breast-cancer"))) as other:
        body = {"inputs": [matrix([example], list(example))]}
        assert other.post("/v2/models/breast-cancer/infer", json=body).status_code == 200
        assert other.post(INFER, json=body).status_code == 404
        assert other.get("/v2/models/breast-cancer").json()["name"] == "breast-cancer"
