"""V2 inference for models with categorical columns and gaps (penguins, trained by the real pipeline):
BYTES tensors for categories, null for a missing value, one [N, F] tensor refused for a mixed model,
and a regressor's `value` output; each agrees with /predict on the whole test split."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from api.app import create_app
from harness import Artifacts
from tests.api.support import TestClient, split_rows

pytestmark = pytest.mark.slow  # each family runs the whole pipeline once per session

INFER = "/v2/models/lockstep/infer"


def tensors(artifacts: Artifacts, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One tensor per feature: FP64 for numbers, BYTES for categories, [N, 1], nulls kept."""
    kinds = {f["name"]: f["kind"] for f in artifacts.metadata_document()["features"]}
    return [
        {
            "name": name,
            "shape": [len(rows), 1],
            "datatype": "FP64" if kind == "numeric" else "BYTES",
            "data": [row[name] for row in rows],
        }
        for name, kind in kinds.items()
    ]


@pytest.fixture(scope="module", params=["penguins-forest", "penguins-regressor"])
def served(
    request: pytest.FixtureRequest, trained: Callable[[str], Artifacts]
) -> Iterator[tuple[Artifacts, TestClient]]:
    artifacts = trained(request.param)
    with TestClient(create_app(artifacts.settings())) as client:
        yield artifacts, client


def test_v2_agrees_with_predict_with_categories_and_gaps(served: tuple[Artifacts, TestClient]) -> None:
    artifacts, client = served
    _, rows = split_rows(artifacts)
    features = artifacts.metadata_document()["features"]
    for i, feature in enumerate(features[:3]):  # gaps in numeric and categorical columns alike
        rows[i][feature["name"]] = None
    rows[3][categorical(artifacts)] = None
    reply = client.post(INFER, json={"inputs": tensors(artifacts, rows)})
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    predictions = client.post("/predict", json={"instances": rows}).json()["predictions"]
    if "value" in predictions[0]:
        assert set(outputs) == {"value"}
        assert outputs["value"]["shape"] == [len(rows)]
        assert outputs["value"]["data"] == [p["value"] for p in predictions]
        return
    classes = list(predictions[0]["probabilities"])
    assert outputs["label"]["data"] == [p["label"] for p in predictions]
    got = np.array(outputs["probabilities"]["data"]).reshape(len(rows), len(classes))
    assert np.array_equal(got, [[p["probabilities"][c] for c in classes] for p in predictions])


def test_v2_metadata_declares_bytes_for_categories(served: tuple[Artifacts, TestClient]) -> None:
    artifacts, client = served
    declared = {i["name"]: i["datatype"] for i in client.get("/v2/models/lockstep").json()["inputs"]}
    features = artifacts.metadata_document()["features"]
    assert declared == {f["name"]: "FP64" if f["kind"] == "numeric" else "BYTES" for f in features}


def categorical(artifacts: Artifacts) -> str:
    name: str = next(
        f["name"] for f in artifacts.metadata_document()["features"] if f["kind"] == "categorical"
    )
    return name


@pytest.mark.parametrize(
    ("change", "words"),
    [
        pytest.param(lambda t: t.update(datatype="FP64", data=[1.0]), "BYTES", id="numbers-for-a-category"),
        pytest.param(lambda t: t.update(data=[3]), "strings or null", id="number-in-bytes"),
    ],
)
def test_a_categorical_tensor_takes_bytes_only(
    served: tuple[Artifacts, TestClient], change: Callable[[dict[str, Any]], object], words: str
) -> None:
    artifacts, client = served
    _, rows = split_rows(artifacts)
    inputs = tensors(artifacts, rows[:1])
    change(next(t for t in inputs if t["name"] == categorical(artifacts)))
    reply = client.post(INFER, json={"inputs": inputs})
    assert reply.status_code == 400, reply.text
    assert words in reply.json()["error"]
    assert categorical(artifacts) in reply.json()["error"]


def test_one_matrix_tensor_is_refused_for_a_mixed_model(served: tuple[Artifacts, TestClient]) -> None:
    artifacts, client = served
    width = len(artifacts.metadata_document()["features"])
    tensor = {"name": "input-0", "shape": [1, width], "datatype": "FP64", "data": [1.0] * width}
    reply = client.post(INFER, json={"inputs": [tensor]})
    assert reply.status_code == 400, reply.text
    assert "one tensor per feature" in reply.json()["error"]
