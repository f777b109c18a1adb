"""api.ops through TestClient: liveness, readiness, the model's description and the metrics,
with the default model (the repository's own `dvc repro`)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from harness import DEFAULT
from tests.api.support import TestClient

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
