"""pipeline.export: the ONNX gate, the exact path when it fails, and the committed artifacts'
agreement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.data import Table
from pipeline.errors import PipelineError
from pipeline.export import (
    attempt,
    check_margin,
    check_rows,
    reference_outputs,
    serving_document,
    with_probes,
)
from pipeline.features import model_input
from tests.pipeline.support import LOGISTIC, small_schema, train


def test_export_gate_passes_a_logistic_model_in_double_with_check_rows(table: Table) -> None:
    model = train(table, small_schema(), params=LOGISTIC)
    X = model_input(with_probes(table.X, small_schema()), small_schema())
    ref = reference_outputs(model, X, small_schema())
    result = attempt(model, small_schema(), X, ref, "double")
    assert result.passed, result.error
    assert result.worst is not None
    assert result.worst <= 1e-12
    doc, onnx_bytes = serving_document(model, small_schema(), table.X, X, ref, [result], model_md5="0" * 32)
    assert doc["path"] == "onnx"
    assert onnx_bytes
    # The two numeric columns arrive as one [n, 2] block; the categorical one as [n, 1] strings.
    inputs = sorted((i["type"], i["features"]) for i in doc["onnx"]["inputs"])
    numeric = [c.name for c in small_schema().features if c.kind == "numeric"]
    categorical = [c.name for c in small_schema().features if c.kind == "categorical"]
    assert inputs == [("double", numeric), ("string", categorical)]
    # Probe rows: the test rows plus one gap per feature and one unseen level per categorical feature.
    assert doc["gate"]["rows"] == len(table.y) + 3 + 1
    assert any(None in row.values() for row in doc["check"]["rows"])
    assert ref.labels is not None
    assert doc["check"]["labels"] == [ref.labels[i] for i in check_rows(table.X)]
    assert doc["check"]["expected"] == ref.outputs[check_rows(table.X)].tolist()
    json.dumps(doc, allow_nan=False)


def test_export_takes_the_exact_path_when_the_gate_fails(table: Table) -> None:
    model = train(table, small_schema(), params=LOGISTIC)
    X = model_input(table.X, small_schema())
    ref = reference_outputs(model, X, small_schema())
    skewed = type(ref)(labels=ref.labels, outputs=ref.outputs + 1e-3)  # as if the graph were off by 1e-3
    attempts = [attempt(model, small_schema(), X, skewed, p) for p in ("double", "float")]
    assert not any(a.passed for a in attempts)
    doc, onnx_bytes = serving_document(
        model, small_schema(), table.X, X, skewed, attempts, model_md5="0" * 32
    )
    assert doc["path"] == "sklearn"
    assert doc["onnx"] is None
    assert onnx_bytes == b""
    assert "gate failed: worst difference" in doc["reason"]
    assert doc["gate"]["passed"] is False
    assert "0.001" not in doc["reason"]  # no measured number: serving.json must not vary by CPU


def test_export_stops_when_the_gate_passes_inside_the_margin(table: Table) -> None:
    """Within the tolerance but above tolerance / MARGIN (linear, double: 1e-12 / 2), another CPU's
    onnxruntime could decide otherwise: the stage stops instead of taking either path."""
    model = train(table, small_schema(), params=LOGISTIC)
    X = model_input(table.X, small_schema())
    ref = reference_outputs(model, X, small_schema())
    near = type(ref)(labels=ref.labels, outputs=ref.outputs + 7.5e-13)
    taken = attempt(model, small_schema(), X, near, "double")
    assert taken.passed
    with pytest.raises(PipelineError, match=r"worst difference 7\.5e-13 lies between tolerance/2 \(5e-13\)"):
        check_margin(model, taken)
    check_margin(model, attempt(model, small_schema(), X, ref, "double"))  # 2e-16: well inside


def test_committed_artifacts_agree_with_each_other(repo_root: Path) -> None:
    """The real artifacts (made by `dvc repro`): the default model takes the ONNX path in double,
    and serving.json, metadata.json and the schema describe the same model and features."""
    from contract import SCHEMA_FILE, SERVING_FILE, md5_hex

    serving = json.loads((repo_root / SERVING_FILE).read_text())
    meta = json.loads((repo_root / "models/metadata.json").read_text())
    schema = json.loads((repo_root / SCHEMA_FILE).read_text())
    assert serving["path"] == "onnx"
    assert serving["onnx"]["precision"] == "double"
    assert serving["model"]["md5"] == md5_hex((repo_root / "models/model.joblib").read_bytes())
    assert serving["onnx"]["md5"] == md5_hex((repo_root / "models/model.onnx").read_bytes())
    assert meta["features"] == schema["features"]
    # All 30 numeric columns arrive as one [n, 30] block, in metadata order.
    [block] = serving["onnx"]["inputs"]
    assert block["features"] == [f["name"] for f in meta["features"]]
    assert block["type"] == "double"
    assert serving["classes"] == meta["classes"] == ["benign", "malignant"]
    assert meta["metrics"]["roc_auc"] > 0.95
