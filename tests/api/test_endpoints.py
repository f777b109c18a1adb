"""Every endpoint through TestClient, with the default model (the repository's own `dvc repro`)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pandas as pd
import pytest

from contract import load_verified_pickle
from tests.api.support import DEFAULT, TestClient, imported_after_serving

MODEL_MD5 = re.compile(r"^[0-9a-f]{32}$")


def test_healthz(client: TestClient) -> None:
    reply = client.get("/healthz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok"}


def test_readyz_reports_the_verified_model(client: TestClient) -> None:
    reply = client.get("/readyz")
    assert reply.status_code == 200
    assert reply.json() == {
        "status": "ready",
        "model_version": hashlib.md5(DEFAULT.model.read_bytes()).hexdigest(),
    }


def test_model_describes_path_gate_task_params_metrics_features_and_locks(
    client: TestClient, metadata: dict[str, Any]
) -> None:
    doc = client.get("/model").json()
    serving = DEFAULT.serving_document()
    assert doc["model_version"] == hashlib.md5(DEFAULT.model.read_bytes()).hexdigest()
    assert doc["task"] == metadata["task"]
    assert doc["serving"]["path"] == serving["path"]
    assert doc["serving"]["reason"] == serving["reason"]
    assert doc["serving"]["gate"] == serving["gate"]
    assert doc["serving"]["startup_check"]["worst_abs_diff"] <= serving["gate"]["tolerance"]
    assert doc["params"] == metadata["params"]
    assert doc["metrics"] == metadata["metrics"]
    assert doc["features"] == metadata["features"]
    assert doc["classes"] == metadata["classes"]
    assert doc["estimator"] == metadata["estimator"]
    assert doc["library_versions"]["trained_with"] == metadata["library_versions"]
    for name, path in (
        ("model", DEFAULT.model),
        ("serving", DEFAULT.serving),
        ("metadata", DEFAULT.metadata),
    ):
        assert doc["artifacts"][name]["md5"] == hashlib.md5(path.read_bytes()).hexdigest()
    assert doc["locks"]["dvc_lock"]["sha256"] == hashlib.sha256(DEFAULT.lock.read_bytes()).hexdigest()
    assert MODEL_MD5.match(doc["locks"]["requirements"]["md5"])
    if serving["path"] == "onnx":
        assert doc["artifacts"]["onnx"]["md5"] == hashlib.md5(DEFAULT.onnx.read_bytes()).hexdigest()
        assert "scikit-learn" not in doc["library_versions"]["serving"]  # served without it


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


def test_request_id_is_echoed_or_generated(client: TestClient, example: dict[str, Any]) -> None:
    echoed = client.post("/predict", json={"instances": [example]}, headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    # A header value unsafe for logs is replaced, not echoed.
    unsafe = client.get("/healthz", headers={"X-Request-ID": "x" * 500})
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["x-request-id"])
    spaced = client.get("/healthz", headers={"X-Request-ID": "a b"})
    assert re.fullmatch(r"[0-9a-f]{32}", spaced.headers["x-request-id"])


def test_error_bodies_carry_the_request_id(client: TestClient) -> None:
    reply = client.post("/predict", json={"instances": []}, headers={"X-Request-ID": "req-42"})
    assert reply.status_code == 422
    assert reply.json()["error"]["request_id"] == "req-42"
    assert reply.headers["x-request-id"] == "req-42"


def test_access_log_is_one_json_record_per_request(
    client: TestClient, example: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="api.access"):
        client.post("/predict", json={"instances": [example, example]}, headers={"X-Request-ID": "log-me"})
    [record] = [r for r in caplog.records if r.name == "api.access"]
    assert record.__dict__["request_id"] == "log-me"
    assert record.__dict__["status"] == 200
    assert record.__dict__["rows"] == 2
    assert record.__dict__["path"] == "/predict"


def test_json_formatter_emits_one_line() -> None:
    import logging

    import orjson

    from api.logs import JsonFormatter

    record = logging.LogRecord("api.access", logging.INFO, __file__, 1, "request", None, None)
    record.__dict__.update({"request_id": "r1", "status": 200})
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert orjson.loads(line) | {"ts": None} == {
        "ts": None,
        "level": "info",
        "logger": "api.access",
        "message": "request",
        "request_id": "r1",
        "status": 200,
    }


def test_metrics_exposition(client: TestClient, example: dict[str, Any], metadata: dict[str, Any]) -> None:
    client.post("/predict", json={"instances": [example] * 3})
    client.post("/predict", json={"instances": []})
    text = client.get("/metrics").text
    assert 'lockstep_http_requests_total{method="POST",route="/predict",status="200"}' in text
    assert 'lockstep_http_requests_total{method="POST",route="/predict",status="422"}' in text
    assert 'lockstep_http_request_duration_seconds_bucket{le="0.001",method="POST",route="/predict"' in text
    assert re.search(r'lockstep_predictions_total\{label="(benign|malignant)"\} [1-9]', text)
    assert "lockstep_prediction_rows_bucket" in text
    version = hashlib.md5(DEFAULT.model.read_bytes()).hexdigest()
    sklearn = re.escape(metadata["library_versions"]["scikit-learn"])
    path, task = DEFAULT.serving_document()["path"], metadata["task"]
    assert re.search(
        rf'lockstep_model_info\{{path="{path}",sklearn="{sklearn}",task="{task}",version="{version}"\}} 1',
        text,
    )


def test_unknown_paths_share_one_metric_label(client: TestClient) -> None:
    assert client.get("/no/such/path").status_code == 404
    assert client.get("/another-unknown").status_code == 404
    text = client.get("/metrics").text
    assert 'route="<other>"' in text
    assert "/no/such/path" not in text


def test_openapi_documents_the_real_features_with_the_example(
    client: TestClient, feature_names: list[str], example: dict[str, Any], metadata: dict[str, Any]
) -> None:
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    named = schemas["NamedInstance"]
    assert list(named["properties"]) == feature_names
    for feature in metadata["features"]:
        wanted = ["number", "null"] if feature["kind"] == "numeric" else ["string", "null"]
        assert named["properties"][feature["name"]]["type"] == wanted
    assert named["required"] == feature_names
    assert named["additionalProperties"] is False
    assert named["example"] == example
    assert (
        schemas["PositionalInstance"]["minItems"]
        == schemas["PositionalInstance"]["maxItems"]
        == len(feature_names)
    )
    assert list(schemas["Prediction"]["properties"]["probabilities"]["properties"]) == metadata["classes"]
    body = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["examples"]["named"]["value"] == {"instances": [example]}
    assert set(doc["paths"]["/predict"]["post"]["responses"]) >= {"200", "400", "413", "415", "422"}
    assert "/_bench/ceiling" not in doc["paths"]
    assert client.get("/docs").status_code == 200


def test_ceiling_route_validates_like_predict(client: TestClient, example: dict[str, Any]) -> None:
    assert client.post("/_bench/ceiling", json={"instances": [example]}).json() == {"ok": True}
    assert client.post("/_bench/ceiling", json={"instances": [{}]}).status_code == 422


def test_ceiling_route_is_off_by_default() -> None:
    from api.app import create_app
    from tests.api.support import make_settings

    app = create_app(make_settings(enable_ceiling_route=False))
    with TestClient(app) as plain:
        assert plain.post("/_bench/ceiling", json={}).status_code == 404


def test_fastapi_route_and_lean_handler_answer_alike(
    example: dict[str, Any], feature_names: list[str]
) -> None:
    """POST /predict is answered by raw ASGI; the FastAPI route behind it must give the same answer."""
    from api.app import create_app
    from tests.api.support import make_settings

    app = create_app(make_settings())
    body = {"instances": [example, [example[n] for n in feature_names]]}
    bad = {"instances": [{"unknown": 1}]}
    with TestClient(app) as client:
        lean = [client.post("/predict", json=b) for b in (body, bad)]
        app.state.lean_routes.clear()
        routed = [client.post("/predict", json=b) for b in (body, bad)]
        assert client.post("/_bench/ceiling", json=body).json() == {"ok": True}
    for via_lean, via_fastapi in zip(lean, routed, strict=True):
        assert via_lean.status_code == via_fastapi.status_code
        assert via_lean.headers["content-type"] == via_fastapi.headers["content-type"]
        first, second = via_lean.json(), via_fastapi.json()
        if "error" in first:  # request ids differ by design
            first["error"]["request_id"] = second["error"]["request_id"] = None
        assert first == second


def test_onnx_path_never_imports_scikit_learn_scipy_joblib_or_pandas() -> None:
    """They cost over a second of start-up and ~150 MB of image: the ONNX path must not need them."""
    if DEFAULT.serving_document()["path"] != "onnx":
        pytest.skip("the default model takes the exact path")
    assert imported_after_serving(DEFAULT) == []
