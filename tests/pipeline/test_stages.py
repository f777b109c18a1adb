"""Unit tests of the stages' pure functions on small in-memory data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from pipeline.data import Table, read_table
from pipeline.errors import PipelineError
from pipeline.evaluate import build_metadata, confusion_points, evaluate, roc_points
from pipeline.export import export_linear
from pipeline.params import PrepareParams, TrainParams, load_params
from pipeline.prepare import split
from pipeline.train import train

TRAIN = TrainParams(C=1.0, max_iter=500, tol=1e-6, seed=0)


@pytest.fixture(scope="module")
def table() -> Table:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(120, 3))
    y = np.where(X[:, 0] + 0.5 * X[:, 1] > 0, "pos", "neg")
    return Table(features=("a", "b", "c"), target="label", X=X, y=y.astype(np.str_))


def test_split_is_seeded_stratified_and_disjoint(table: Table) -> None:
    params = PrepareParams(raw_data="x.csv", target="label", test_size=0.25, seed=3)
    train1, test1 = split(table, params=params)
    train2, test2 = split(table, params=params)
    assert train1.X.tobytes() == train2.X.tobytes()
    assert test1.X.tobytes() == test2.X.tobytes()
    assert len(train1.y) + len(test1.y) == len(table.y)
    assert len(test1.y) == 30
    rows = {r.tobytes() for r in train1.X} & {r.tobytes() for r in test1.X}
    assert rows == set()
    assert set(test1.y) == {"pos", "neg"}
    assert np.mean(test1.y == "pos") == pytest.approx(np.mean(table.y == "pos"), abs=0.05)


def test_split_rejects_a_single_class(table: Table) -> None:
    one = Table(features=table.features, target="label", X=table.X, y=np.full(len(table.y), "pos"))
    params = PrepareParams(raw_data="x.csv", target="label", test_size=0.2, seed=0)
    with pytest.raises(PipelineError, match="column 'label': needs at least 2 classes"):
        split(one, params=params)


def test_train_fits_a_model_that_separates_the_classes(table: Table) -> None:
    model = train(table.X, table.y, params=TRAIN)
    assert list(model.classes_) == ["neg", "pos"]
    assert (model.predict(table.X) == table.y).mean() > 0.95


def test_train_is_deterministic_in_process(table: Table) -> None:
    import pickle

    a = pickle.dumps(train(table.X, table.y, params=TRAIN))
    b = pickle.dumps(train(table.X, table.y, params=TRAIN))
    assert a == b


def test_evaluate_reports_metrics_in_range(table: Table) -> None:
    model = train(table.X, table.y, params=TRAIN)
    scores = evaluate(model, table.X, table.y, positive_class="pos")
    for key in ("accuracy", "balanced_accuracy", "roc_auc", "f1", "precision", "recall"):
        assert 0.9 <= scores[key] <= 1.0, key
    assert scores["n_test"] == len(table.y)
    assert len(confusion_points(model, table.X, table.y)) == len(table.y)
    roc = roc_points(model, table.X, table.y, positive_class="pos")
    assert roc[0] == {"fpr": 0.0, "tpr": 0.0}
    assert roc[-1] == {"fpr": 1.0, "tpr": 1.0}


def test_evaluate_rejects_unknown_positive_class(table: Table) -> None:
    model = train(table.X, table.y, params=TRAIN)
    with pytest.raises(PipelineError, match=r"evaluate\.positive_class: 'maybe' is not a class"):
        evaluate(model, table.X, table.y, positive_class="maybe")


def test_metadata_describes_features_classes_versions_and_example(table: Table, repo_root: Path) -> None:
    model = train(table.X, table.y, params=TRAIN)
    params = load_params(repo_root / "params.yaml")
    meta = build_metadata(model, table, params, {"accuracy": 1.0})
    assert [f["name"] for f in meta["features"]] == ["a", "b", "c"]
    assert meta["classes"] == ["neg", "pos"]
    assert meta["example"] == dict(zip("abc", table.X[0].tolist(), strict=True))
    assert set(meta["library_versions"]) == {"python", "scikit-learn", "numpy", "scipy", "joblib"}
    assert meta["params"]["train"]["C"] == params.train.C
    json.dumps(meta, allow_nan=False)


def test_committed_metadata_matches_the_model_and_data(repo_root: Path) -> None:
    """The real artifacts (made by `dvc repro`) agree with each other."""
    import joblib

    meta = json.loads((repo_root / "models/metadata.json").read_text())
    model = joblib.load(repo_root / "models/model.joblib")
    test = read_table(repo_root / "data/prepared/test.csv", meta["target"])
    assert [f["name"] for f in meta["features"]] == list(test.features)
    assert meta["classes"] == [str(c) for c in model.classes_]
    assert model.n_features_in_ == len(test.features) == 30
    assert meta["metrics"]["roc_auc"] > 0.95


def test_export_holds_the_fitted_arrays_and_predict_proba_of_its_check_rows(table: Table) -> None:
    model = train(table.X, table.y, params=TRAIN)
    doc = export_linear(model, table.features, table.X[:5], model_md5="f" * 32)
    scaler, clf = model.steps[0][1], model.steps[1][1]
    assert doc["mean"] == scaler.mean_.tolist()
    assert doc["scale"] == scaler.scale_.tolist()
    assert doc["coef"] == clf.coef_[0].tolist()
    assert doc["intercept"] == clf.intercept_[0]
    assert doc["features"] == ["a", "b", "c"]
    assert doc["classes"] == ["neg", "pos"]
    rows = np.array(doc["check"]["rows"])
    assert rows.shape == (6, 3)
    assert not rows[-1].any()
    assert doc["check"]["probabilities"] == model.predict_proba(rows).tolist()
    assert doc["source"]["md5"] == "f" * 32
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc  # floats round-trip bit for bit


def _fit(estimator: object, table: Table, labels: np.ndarray | None = None) -> object:
    return estimator.fit(table.X, table.y if labels is None else labels)  # type: ignore[attr-defined]


UNEXPORTABLE = {
    "other-scaler": (
        lambda: Pipeline([("s", MinMaxScaler()), ("c", LogisticRegression())]),
        None,
        "MinMaxScaler",
    ),
    "other-model": (
        lambda: Pipeline([("s", StandardScaler()), ("c", RandomForestClassifier(n_estimators=3))]),
        None,
        "RandomForestClassifier",
    ),
    "bare-estimator": (LogisticRegression, None, "cannot export LogisticRegression"),
    "multiclass": (
        lambda: Pipeline([("s", StandardScaler()), ("c", LogisticRegression())]),
        np.array(["x", "y", "z"] * 40),
        "3-class model",
    ),
}


@pytest.mark.parametrize("case", UNEXPORTABLE, ids=list(UNEXPORTABLE))
def test_export_refuses_models_it_cannot_replay_naming_them(table: Table, case: str) -> None:
    make, labels, fragment = UNEXPORTABLE[case]
    model = _fit(make(), table, labels)
    with pytest.raises(PipelineError, match=fragment):
        export_linear(model, table.features, table.X[:2], model_md5="0" * 32)


def test_committed_export_belongs_to_the_committed_model(repo_root: Path) -> None:
    import hashlib

    import joblib

    doc = json.loads((repo_root / "models/model.json").read_text())
    raw = (repo_root / "models/model.joblib").read_bytes()
    assert doc["source"]["md5"] == hashlib.md5(raw).hexdigest()
    model = joblib.load(repo_root / "models/model.joblib")
    # Not bit for bit: the stage ran on the pinned SSE kernel, this process on the CPU's own.
    np.testing.assert_allclose(
        doc["check"]["probabilities"], model.predict_proba(np.array(doc["check"]["rows"])), rtol=0, atol=1e-12
    )
