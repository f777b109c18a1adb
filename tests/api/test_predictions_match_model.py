"""Served predictions over the whole test split equal scikit-learn's in-process ones, within the
tolerance the export stage's gate states (the ONNX path), or exactly (the exact path)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the dev lock

from contract import load_verified_pickle
from contract.dates import date_parts, part_names
from harness import DEFAULT, Artifacts
from tests.api.support import TestClient


def split_rows(artifacts: Artifacts) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """data/prepared/test.csv as the model's input frame, and as JSON rows (null for a gap)."""
    meta = artifacts.metadata_document()
    kinds = {f["name"]: f["kind"] for f in meta["features"]}
    frame = pd.read_csv(
        artifacts.test_split, dtype={n: "object" for n, k in kinds.items() if k != "numeric"}
    )[list(kinds)]
    rows = [
        {n: None if isinstance(v, float) and math.isnan(v) else v for n, v in record.items()}
        for record in frame.to_dict("records")
    ]
    # The contract's way of feeding the pickle: a categorical gap is serving.json's missing_string.
    gap = artifacts.serving_document()["missing_string"]
    for name, kind in kinds.items():
        if kind == "categorical":
            frame[name] = frame[name].astype(object).where(frame[name].notna(), gap)
    # And a date as its parts (contract.dates), after the other features.
    model = frame[[n for n, k in kinds.items() if k != "date"]].copy()
    for name in (n for n, k in kinds.items() if k == "date"):
        parts = [date_parts(v) if isinstance(v, str) else None for v in frame[name].tolist()]
        for j, part in enumerate(part_names(name)):
            model[part] = [math.nan if p is None else p[j] for p in parts]
    return model, rows


def assert_within_gate(served: Any, expected: Any, gate: dict[str, Any]) -> None:
    """The gate's own measure: |got - expected|, or relative to max(1, |expected|) for regression."""
    served, expected = np.asarray(served, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    scale = np.maximum(1.0, np.abs(expected)) if gate.get("measure") == "relative" else 1.0
    worst = float(np.max(np.abs(served - expected) / scale))
    assert worst <= gate["tolerance"], f"worst difference {worst:.3g} > {gate['tolerance']:g}"


def served_agree_with_in_process(client: TestClient, artifacts: Artifacts) -> None:
    model, _ = load_verified_pickle(artifacts.model, artifacts.lock)  # md5 before unpickling
    frame, rows = split_rows(artifacts)
    gate = artifacts.serving_document()["gate"]
    positional = [list(row.values()) for row in rows]
    for instances in (rows, positional):  # both request formats, in one batch
        reply = client.post("/predict", json={"instances": instances})
        assert reply.status_code == 200, reply.text
        predictions = reply.json()["predictions"]
        if hasattr(model, "predict_proba"):
            expected = model.predict_proba(frame)
            classes = [str(c) for c in model.classes_]
            served = np.array([[p["probabilities"][c] for c in classes] for p in predictions])
            assert [p["label"] for p in predictions] == [str(c) for c in model.predict(frame)]
        else:
            expected = model.predict(frame)
            served = np.array([p["value"] for p in predictions])
        assert_within_gate(served, expected, gate)
    # And one row per request, as most clients call it.
    for row, want in zip(rows[:10], expected[:10], strict=True):
        [prediction] = client.post("/predict", json={"instances": [row]}).json()["predictions"]
        got = (
            list(prediction["probabilities"].values())
            if "probabilities" in prediction
            else prediction["value"]
        )
        assert_within_gate(got, want, gate)


def test_default_model_serves_the_test_split_as_scikit_learn_predicts_it(client: TestClient) -> None:
    served_agree_with_in_process(client, DEFAULT)
