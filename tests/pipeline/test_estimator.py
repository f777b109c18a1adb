"""pipeline.estimator: the class params.yaml names, resolved, checked and built."""

from __future__ import annotations

import pytest

from pipeline.data import Table
from pipeline.errors import PipelineError
from pipeline.estimator import build_estimator, resolve_class, task_of
from pipeline.params import EstimatorParams, TrainParams
from tests.pipeline.support import small_schema, train


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


def test_tree_families_get_no_scaler(table: Table) -> None:
    params = TrainParams.model_validate(
        {
            "estimator": {"class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 3}},
            "seed": 0,
        }
    )
    model = train(table, small_schema(), params=params)
    numeric = model.named_steps["preprocess"].named_transformers_["numeric"]
    assert [name for name, _ in numeric.steps] == ["impute"]
