"""Model families other than the default, each trained by the real pipeline in a repo copy: a
multi-class forest on the penguins data (categorical columns, missing values), a regressor, and a
model skl2onnx cannot convert (the exact path). Each is served, and served faithfully."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import joblib
import orjson
import pytest

from api.app import create_app
from contract import ContractError
from harness import Artifacts, imported_after_serving
from tests.api.support import TestClient, check_error_body, served_agree_with_in_process

pytestmark = pytest.mark.slow  # each family runs the whole pipeline once per session

EXPECTED = {  # family -> (serving path, task)
    "penguins-forest": ("onnx", "multiclass"),
    "penguins-regressor": ("onnx", "regression"),
    "penguins-exact": ("sklearn", "multiclass"),
}


@pytest.fixture(scope="module", params=list(EXPECTED))
def family(request: pytest.FixtureRequest, trained: Callable[[str], Artifacts]) -> tuple[str, Artifacts]:
    name: str = request.param
    return name, trained(name)


@pytest.fixture(scope="module")
def served(family: tuple[str, Artifacts]) -> Iterator[tuple[str, Artifacts, TestClient]]:
    name, artifacts = family
    with TestClient(create_app(artifacts.settings())) as client:
        yield name, artifacts, client


@pytest.fixture(scope="module")
def penguins(trained: Callable[[str], Artifacts]) -> Iterator[tuple[Artifacts, TestClient]]:
    artifacts = trained("penguins-forest")
    with TestClient(create_app(artifacts.settings())) as client:
        yield artifacts, client


def example_of(artifacts: Artifacts) -> dict[str, Any]:
    meta = artifacts.metadata_document()
    return {f["name"]: meta["example"][f["name"]] for f in meta["features"]}


def test_model_shows_the_path_its_reason_the_gate_and_the_task(
    served: tuple[str, Artifacts, TestClient],
) -> None:
    name, artifacts, client = served
    path, task = EXPECTED[name]
    serving = artifacts.serving_document()
    doc = client.get("/model").json()
    assert (doc["serving"]["path"], doc["task"]) == (path, task)
    assert doc["serving"]["reason"] == serving["reason"]
    assert doc["serving"]["gate"] == serving["gate"]
    rule = "the estimator's predict(), not always the most probable class"
    assert doc["serving"]["label"] == (None if task == "regression" else rule)
    if path == "sklearn":
        assert "exact path" in doc["serving"]["reason"]
    assert doc["model_version"] == hashlib.md5(artifacts.model.read_bytes()).hexdigest()


def test_served_predictions_equal_scikit_learn_on_the_test_split(
    served: tuple[str, Artifacts, TestClient],
) -> None:
    _, artifacts, client = served
    served_agree_with_in_process(client, artifacts)


def test_response_shape_follows_the_task(served: tuple[str, Artifacts, TestClient]) -> None:
    name, artifacts, client = served
    [prediction] = client.post("/predict", json={"instances": [example_of(artifacts)]}).json()["predictions"]
    if EXPECTED[name][1] == "regression":
        assert set(prediction) == {"value"}
        assert isinstance(prediction["value"], float)
    else:
        classes = artifacts.metadata_document()["classes"]
        assert list(prediction["probabilities"]) == classes
        assert prediction["label"] in classes


def counted(client: TestClient, metric: str, feature: str) -> float:
    found = re.search(rf'{metric}_total\{{feature="{feature}"\}} (\S+)', client.get("/metrics").text)
    return float(found.group(1)) if found else 0.0


def test_nulls_and_unknown_categories_are_served_and_counted(
    served: tuple[str, Artifacts, TestClient],
) -> None:
    _, artifacts, client = served
    signals = [
        ("lockstep_unknown_category", "island"),
        ("lockstep_missing_value", "sex"),
        ("lockstep_missing_value", "bill_length_mm"),
        ("lockstep_unknown_category", "sex"),
    ]
    before = [counted(client, *signal) for signal in signals]
    row = example_of(artifacts)
    row.update(island="Atlantis", sex=None, bill_length_mm=None)
    positional = list(row.values())
    reply = client.post("/predict", json={"instances": [row, positional]})
    assert reply.status_code == 200, reply.text
    first, second = reply.json()["predictions"]
    assert first == second
    after = [counted(client, *signal) for signal in signals]
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 2, 2, 0]


CATEGORICAL_BAD_INPUT = [
    pytest.param("island", 3, "must be a string (a category) or null, got number", id="number-for-category"),
    pytest.param("sex", True, "got boolean", id="boolean-for-category"),
    pytest.param("island", ["Biscoe"], "got array", id="array-for-category"),
    pytest.param("bill_length_mm", "39.1", "must be a number or null, got string", id="string-for-number"),
    pytest.param("bill_length_mm", False, "got boolean", id="boolean-for-number"),
]


@pytest.mark.parametrize(("field", "value", "message"), CATEGORICAL_BAD_INPUT)
def test_values_of_the_wrong_kind_are_a_located_422(
    penguins: tuple[Artifacts, TestClient], field: str, value: Any, message: str
) -> None:
    artifacts, client = penguins
    good = example_of(artifacts)
    for instances in (
        [good, {**good, field: value}],
        [list(good.values()), list({**good, field: value}.values())],
    ):
        reply = client.post("/predict", json={"instances": instances})
        check_error_body(reply, 422, 1, field)
        assert message in reply.json()["error"]["errors"][0]["message"]


def test_openapi_types_categorical_columns_as_strings(penguins: tuple[Artifacts, TestClient]) -> None:
    artifacts, client = penguins
    properties = client.get("/openapi.json").json()["components"]["schemas"]["NamedInstance"]["properties"]
    for feature in artifacts.metadata_document()["features"]:
        schema = properties[feature["name"]]
        if feature["kind"] == "categorical":
            assert schema["type"] == ["string", "null"]
            assert schema["examples"] == feature["categories"]
        else:
            assert schema["type"] == ["number", "null"]


def test_only_the_exact_path_imports_scikit_learn(family: tuple[str, Artifacts]) -> None:
    name, artifacts = family
    imported = imported_after_serving(artifacts)
    if EXPECTED[name][0] == "onnx":
        assert imported == []
    else:
        assert "sklearn" in imported


def test_exact_path_refuses_a_tampered_pickle_before_unpickling(
    trained: Callable[[str], Artifacts], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = trained("penguins-exact").copy_to(tmp_path / "copy")
    data = bytearray(copy.model.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.model.write_bytes(bytes(data))

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("an unverified pickle was unpickled")

    monkeypatch.setattr(joblib, "load", forbidden)
    with pytest.raises(ContractError, match="has md5") as refused, TestClient(create_app(copy.settings())):
        pass
    assert str(copy.model) in str(refused.value)


def test_exact_path_refuses_a_pickle_whose_md5_is_locked_but_not_its_sha256(
    trained: Callable[[str], Artifacts], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an md5 twin looks like to the service: dvc.lock's md5 matches (relocked here, as a
    collision would match it), models/model.sha256 (from git) does not. tests/test_contract.py
    does the same with a real md5 collision pair."""
    copy = trained("penguins-exact").copy_to(tmp_path / "copy")
    data = bytearray(copy.model.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.relock(copy.model, bytes(data))

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a pickle was unpickled before its sha256 was checked")

    monkeypatch.setattr(joblib, "load", forbidden)
    with pytest.raises(ContractError) as refused, TestClient(create_app(copy.settings())):
        pass
    assert f"model {copy.model} has sha256 {hashlib.sha256(data).hexdigest()} but {copy.sha256}" in str(
        refused.value
    )


def test_exact_path_refuses_output_it_does_not_reproduce(
    trained: Callable[[str], Artifacts], tmp_path: Any
) -> None:
    copy = trained("penguins-exact").copy_to(tmp_path / "copy")
    doc = copy.serving_document()
    doc["check"]["expected"][0] = [p + 1e-3 for p in doc["check"]["expected"][0]]
    copy.relock(copy.serving, orjson.dumps(doc))
    refusal = "the sklearn path differs from scikit-learn's recorded output"
    with pytest.raises(ContractError, match=refusal), TestClient(create_app(copy.settings())):
        pass


def test_a_float32_graph_refuses_numbers_beyond_float32_by_field(
    penguins: tuple[Artifacts, TestClient],
) -> None:
    artifacts, client = penguins
    if artifacts.serving_document()["onnx"]["precision"] != "float":
        pytest.skip("this graph takes double inputs")
    reply = client.post("/predict", json={"instances": [{**example_of(artifacts), "bill_depth_mm": 1e39}]})
    check_error_body(reply, 422, 0, "bill_depth_mm")
    assert "must be between" in reply.json()["error"]["errors"][0]["message"]
    schema = client.get("/openapi.json").json()["components"]["schemas"]["NamedInstance"]
    assert schema["properties"]["bill_depth_mm"]["maximum"] < 1e39


def test_exact_path_without_scikit_learn_is_a_one_line_refusal(
    trained: Callable[[str], Artifacts], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image built for the ONNX path has no scikit-learn: say so instead of a traceback."""

    def missing(*args: object, **kwargs: object) -> None:
        raise ModuleNotFoundError("No module named 'sklearn'", name="sklearn")

    monkeypatch.setattr(joblib, "load", missing)
    app = create_app(trained("penguins-exact").settings())
    with pytest.raises(ContractError, match="the exact path needs sklearn") as refused, TestClient(app):
        pass
    assert "\n" not in str(refused.value)
