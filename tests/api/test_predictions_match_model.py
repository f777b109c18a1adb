"""Served predictions over the whole test split equal the in-process model's."""

from __future__ import annotations

import joblib
import numpy as np

from tests.api.support import MODEL, TestClient


def test_test_split_predictions_equal_in_process_model(
    client: TestClient, test_split: tuple[list[list[float]], list[str]], feature_names: list[str]
) -> None:
    rows, _ = test_split
    model = joblib.load(MODEL)
    expected_proba = model.predict_proba(np.array(rows))
    expected_labels = [str(c) for c in model.predict(np.array(rows))]

    named = [dict(zip(feature_names, row, strict=True)) for row in rows]
    for instances in (named, rows):  # both request formats, in one batch
        reply = client.post("/predict", json={"instances": instances})
        assert reply.status_code == 200
        predictions = reply.json()["predictions"]
        served = np.array([[p["probabilities"][str(c)] for c in model.classes_] for p in predictions])
        assert [p["label"] for p in predictions] == expected_labels
        np.testing.assert_allclose(served, expected_proba, rtol=0, atol=1e-12)

    # And one row per request, as most clients call it.
    for row, proba in zip(named[:20], expected_proba[:20], strict=True):
        [prediction] = client.post("/predict", json={"instances": [row]}).json()["predictions"]
        np.testing.assert_allclose(list(prediction["probabilities"].values()), proba, rtol=0, atol=1e-12)
