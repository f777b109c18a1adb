"""Unit tests of the stages' pure functions on small in-memory data."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the dev lock
import pytest
from sklearn.pipeline import Pipeline

from contract import MISSING_STRING
from contract.features import Feature
from contract.schema import Schema
from pipeline.data import Table
from pipeline.errors import PipelineError
from pipeline.estimator import build_estimator, resolve_class, task_of
from pipeline.evaluate import build_metadata, classification_metrics, regression_metrics, roc_points
from pipeline.export import (
    attempt,
    check_margin,
    check_rows,
    reference_outputs,
    serving_document,
    with_probes,
)
from pipeline.features import model_input
from pipeline.params import EstimatorParams, PrepareParams, TrainParams, load_params
from pipeline.prepare import split
from pipeline.train import train as train_with_estimator

LOGISTIC = TrainParams.model_validate(
    {
        "estimator": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
        "seed": 0,
    }
)


def train(table: Table, schema: Schema, *, params: TrainParams) -> Pipeline:
    return train_with_estimator(
        table, schema, estimator=build_estimator(params.estimator, seed=params.seed), params=params
    )


def _schema(task: str = "classification") -> Schema:
    return Schema(
        target="label",
        task=task,
        features=(
            Feature("a", "numeric", None, True),
            Feature("b", "numeric", None, False),
            Feature("colour", "categorical", ("blue", "red"), True),
        ),
    )


@pytest.fixture(scope="module")
def table() -> Table:
    rng = np.random.default_rng(7)
    a = rng.normal(size=150)
    b = rng.normal(size=150)
    colour = np.where(rng.random(150) < 0.5, "red", "blue").astype(object)
    colour[::17] = None
    a[::13] = np.nan
    score = np.nan_to_num(a) + 0.5 * b + np.where(colour == "red", 1.0, -1.0)
    X = pd.DataFrame({"a": a, "b": b, "colour": pd.Series(colour, dtype=object)})
    return Table(target="label", X=X, y=np.where(score > 0, "pos", "neg").astype(np.str_))


def test_split_is_seeded_stratified_and_disjoint(table: Table) -> None:
    params = PrepareParams(raw_data="x.csv", target="label", test_size=0.2, seed=3)
    train1, test1 = split(table, params=params, stratify=True)
    train2, test2 = split(table, params=params, stratify=True)
    assert train1.X.equals(train2.X)
    assert test1.X.equals(test2.X)
    assert len(train1.y) + len(test1.y) == len(table.y)
    assert len(test1.y) == 30
    assert set(test1.y) == {"pos", "neg"}
    assert np.mean(test1.y == "pos") == pytest.approx(np.mean(table.y == "pos"), abs=0.05)


def test_split_rejects_a_single_class(table: Table) -> None:
    one = Table(target="label", X=table.X, y=np.full(len(table.y), "pos"))
    params = PrepareParams(raw_data="x.csv", target="label", test_size=0.2, seed=0)
    with pytest.raises(PipelineError, match="column 'label': needs at least 2 classes"):
        split(one, params=params, stratify=True)


@pytest.mark.parametrize(
    ("dotted", "fragment"),
    [
        ("os.path.join", "not a scikit-learn class"),
        ("sklearn.linear_model.LogisticRegresion", "has no estimator class 'LogisticRegresion'"),
        ("sklearn.nonexistent.Thing", "no module 'sklearn.nonexistent'"),
        ("sklearn.preprocessing.StandardScaler", "neither a classifier nor a regressor"),
        ("sklearn.pipeline.Pipeline", "neither a classifier nor a regressor"),
        ("LogisticRegression", "not a scikit-learn class"),
    ],
    ids=["not-sklearn", "typo", "no-module", "transformer", "meta-estimator", "bare-name"],
)
def test_resolve_class_refuses_what_is_not_a_sklearn_estimator_naming_the_key(
    dotted: str, fragment: str
) -> None:
    with pytest.raises(PipelineError, match=r"train\.estimator\.class") as info:
        resolve_class(dotted)
    assert fragment in str(info.value)


def test_task_follows_the_estimator_class() -> None:
    assert task_of("sklearn.ensemble.HistGradientBoostingClassifier") == "classification"
    assert task_of("sklearn.ensemble.HistGradientBoostingRegressor") == "regression"


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"n_estimators": -3}, "'n_estimators' parameter of RandomForestClassifier must be"),
        ({"depth": 3}, "unexpected keyword argument 'depth'"),
        ({"criterion": "purity"}, "'criterion' parameter"),
    ],
    ids=["out-of-range", "unknown-name", "bad-choice"],
)
def test_build_estimator_refuses_hyperparameters_it_rejects(params: dict[str, object], fragment: str) -> None:
    spec = EstimatorParams.model_validate(
        {"class": "sklearn.ensemble.RandomForestClassifier", "params": params}
    )
    with pytest.raises(PipelineError, match=r"train\.estimator\.params") as info:
        build_estimator(spec, seed=0)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("dotted", "params"),
    [
        ("sklearn.linear_model.RidgeClassifier", {}),
        ("sklearn.svm.SVC", {}),
        ("sklearn.svm.SVC", {"probability": False}),
    ],
    ids=["no-predict-proba", "svc-default", "svc-explicit"],
)
def test_build_estimator_refuses_a_classifier_without_probabilities(
    dotted: str, params: dict[str, object]
) -> None:
    spec = EstimatorParams.model_validate({"class": dotted, "params": params})
    with pytest.raises(PipelineError, match=r"train\.estimator\.class: .* gives no class probabilities"):
        build_estimator(spec, seed=0)


def test_build_estimator_accepts_svc_with_probabilities() -> None:
    spec = EstimatorParams.model_validate({"class": "sklearn.svm.SVC", "params": {"probability": True}})
    assert hasattr(build_estimator(spec, seed=0), "predict_proba")


def test_build_estimator_seeds_random_state_unless_given() -> None:
    spec = EstimatorParams.model_validate({"class": "sklearn.ensemble.RandomForestClassifier"})
    assert build_estimator(spec, seed=5).get_params()["random_state"] == 5
    spec = EstimatorParams.model_validate(
        {"class": "sklearn.ensemble.RandomForestClassifier", "params": {"random_state": 9}}
    )
    assert build_estimator(spec, seed=5).get_params()["random_state"] == 9


def test_model_input_feeds_a_categorical_gap_as_the_missing_string(table: Table) -> None:
    X = model_input(table.X, _schema())
    assert X["colour"].tolist()[0] == MISSING_STRING
    assert X["colour"].dtype == object
    assert np.isnan(X["a"].tolist()[0])


def test_train_fits_through_gaps_and_separates_the_classes(table: Table) -> None:
    model = train(table, _schema(), params=LOGISTIC)
    assert list(model.classes_) == ["neg", "pos"]
    assert (model.predict(model_input(table.X, _schema())) == table.y).mean() > 0.9
    assert [name for name, *_ in model.named_steps["preprocess"].transformers] == ["numeric", "categorical"]


def test_tree_families_get_no_scaler(table: Table) -> None:
    params = TrainParams.model_validate(
        {
            "estimator": {"class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 3}},
            "seed": 0,
        }
    )
    model = train(table, _schema(), params=params)
    numeric = model.named_steps["preprocess"].named_transformers_["numeric"]
    assert [name for name, _ in numeric.steps] == ["impute"]


def test_train_is_deterministic_in_process(table: Table) -> None:
    a = pickle.dumps(train(table, _schema(), params=LOGISTIC))
    b = pickle.dumps(train(table, _schema(), params=LOGISTIC))
    assert a == b


def test_classification_metrics_are_in_range(table: Table) -> None:
    model = train(table, _schema(), params=LOGISTIC)
    X = model_input(table.X, _schema())
    scores = classification_metrics(model, X, table.y, positive="pos")
    for key in ("accuracy", "balanced_accuracy", "roc_auc", "f1", "precision", "recall"):
        assert 0.85 <= scores[key] <= 1.0, key
    roc = roc_points(model, X, table.y, positive="pos")
    assert roc[0] == {"fpr": 0.0, "tpr": 0.0}
    assert roc[-1] == {"fpr": 1.0, "tpr": 1.0}


def test_regression_metrics_report_rmse_mae_r2(table: Table) -> None:
    y = np.nan_to_num(table.X["a"].to_numpy()) * 3.0 + table.X["b"].to_numpy()
    params = TrainParams.model_validate({"estimator": {"class": "sklearn.linear_model.Ridge"}, "seed": 0})
    reg = Table(target="label", X=table.X, y=y)
    model = train(reg, _schema("regression"), params=params)
    scores = regression_metrics(model, model_input(table.X, _schema("regression")), y)
    assert set(scores) == {"rmse", "mae", "r2", "n_test"}
    assert scores["r2"] > 0.8


def test_metadata_describes_features_task_estimator_and_example(table: Table, repo_root: Path) -> None:
    model = train(table, _schema(), params=LOGISTIC)
    params = load_params(repo_root / "params.yaml")
    meta = build_metadata(model, _schema(), table, params, {"accuracy": 1.0})
    assert meta["schema_version"] == 2
    assert meta["task"] == "binary"
    assert meta["features"][2] == {
        "name": "colour",
        "kind": "categorical",
        "categories": ["blue", "red"],
        "missing": True,
    }
    assert meta["classes"] == ["neg", "pos"]
    assert meta["example"] == {"a": None, "b": table.X["b"][0], "colour": None}
    assert meta["estimator"]["class"] == params.train.estimator.class_
    assert {"python", "scikit-learn", "numpy", "pandas"} <= set(meta["library_versions"])
    json.dumps(meta, allow_nan=False)


def test_export_gate_passes_a_logistic_model_in_double_with_check_rows(table: Table) -> None:
    model = train(table, _schema(), params=LOGISTIC)
    X = model_input(with_probes(table.X, _schema()), _schema())
    ref = reference_outputs(model, X, _schema())
    result = attempt(model, _schema(), X, ref, "double")
    assert result.passed, result.error
    assert result.worst is not None
    assert result.worst <= 1e-12
    doc, onnx_bytes = serving_document(model, _schema(), table.X, X, ref, [result], model_md5="0" * 32)
    assert doc["path"] == "onnx"
    assert onnx_bytes
    # The two numeric columns arrive as one [n, 2] block; the categorical one as [n, 1] strings.
    inputs = sorted((i["type"], i["features"]) for i in doc["onnx"]["inputs"])
    numeric = [c.name for c in _schema().features if c.kind == "numeric"]
    categorical = [c.name for c in _schema().features if c.kind == "categorical"]
    assert inputs == [("double", numeric), ("string", categorical)]
    # Probe rows: the test rows plus one gap per feature and one unseen level per categorical feature.
    assert doc["gate"]["rows"] == len(table.y) + 3 + 1
    assert any(None in row.values() for row in doc["check"]["rows"])
    assert ref.labels is not None
    assert doc["check"]["labels"] == [ref.labels[i] for i in check_rows(table.X)]
    assert doc["check"]["expected"] == ref.outputs[check_rows(table.X)].tolist()
    json.dumps(doc, allow_nan=False)


def test_export_takes_the_exact_path_when_the_gate_fails(table: Table) -> None:
    model = train(table, _schema(), params=LOGISTIC)
    X = model_input(table.X, _schema())
    ref = reference_outputs(model, X, _schema())
    skewed = type(ref)(labels=ref.labels, outputs=ref.outputs + 1e-3)  # as if the graph were off by 1e-3
    attempts = [attempt(model, _schema(), X, skewed, p) for p in ("double", "float")]
    assert not any(a.passed for a in attempts)
    doc, onnx_bytes = serving_document(model, _schema(), table.X, X, skewed, attempts, model_md5="0" * 32)
    assert doc["path"] == "sklearn"
    assert doc["onnx"] is None
    assert onnx_bytes == b""
    assert "gate failed: worst difference" in doc["reason"]
    assert doc["gate"]["passed"] is False
    assert "0.001" not in doc["reason"]  # no measured number: serving.json must not vary by CPU


def test_export_stops_when_the_gate_passes_inside_the_margin(table: Table) -> None:
    """Within the tolerance but above tolerance / MARGIN (linear, double: 1e-12 / 2), another CPU's
    onnxruntime could decide otherwise: the stage stops instead of taking either path."""
    model = train(table, _schema(), params=LOGISTIC)
    X = model_input(table.X, _schema())
    ref = reference_outputs(model, X, _schema())
    near = type(ref)(labels=ref.labels, outputs=ref.outputs + 7.5e-13)
    taken = attempt(model, _schema(), X, near, "double")
    assert taken.passed
    with pytest.raises(PipelineError, match=r"worst difference 7\.5e-13 lies between tolerance/2 \(5e-13\)"):
        check_margin(model, taken)
    check_margin(model, attempt(model, _schema(), X, ref, "double"))  # 2e-16: well inside


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
