"""The compiled linear path is used only where it reproduces predict_proba; else the model is called."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from api.predictor import EstimatorPredictor, ScaledBinaryLogisticPredictor, build_predictor, compile_linear

RNG = np.random.default_rng(0)
X = RNG.normal(size=(200, 4)) * [1, 10, 100, 0.01] + [0, 5, 500, 0]
Y = np.where(X[:, 0] + X[:, 1] / 10 > 0.5, "yes", "no")


def fitted(*steps: object) -> Pipeline:
    return Pipeline([(f"s{i}", s) for i, s in enumerate(steps)]).fit(X, Y)


@pytest.mark.parametrize("with_mean", [True, False])
@pytest.mark.parametrize("with_std", [True, False])
def test_compiled_path_equals_predict_proba_bit_for_bit(with_mean: bool, with_std: bool) -> None:
    model = fitted(StandardScaler(with_mean=with_mean, with_std=with_std), LogisticRegression())
    predictor = build_predictor(model, X[:1], 1e100)
    assert isinstance(predictor, ScaledBinaryLogisticPredictor)
    np.testing.assert_array_equal(predictor.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(lambda: fitted(MinMaxScaler(), LogisticRegression()), id="other-scaler"),
        pytest.param(
            lambda: fitted(StandardScaler(), RandomForestClassifier(n_estimators=5)), id="other-model"
        ),
        pytest.param(lambda: LogisticRegression().fit(X, Y), id="bare-estimator"),
        pytest.param(
            lambda: Pipeline([("s", StandardScaler()), ("c", LogisticRegression())]).fit(
                X, np.array(["a", "b", "c", "d"] * 50)
            ),
            id="multiclass",
        ),
    ],
)
def test_other_models_fall_back_to_predict_proba(model: object) -> None:
    estimator = model()  # type: ignore[operator]
    assert compile_linear(estimator, 1e100) is None
    predictor = build_predictor(estimator, X[:1], 1e100)
    assert isinstance(predictor, EstimatorPredictor)
    np.testing.assert_array_equal(predictor.predict_proba(X), estimator.predict_proba(X))


def test_disagreement_at_start_up_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    model = fitted(StandardScaler(), LogisticRegression())
    original = ScaledBinaryLogisticPredictor.predict_proba

    def off_by_a_little(self: ScaledBinaryLogisticPredictor, matrix: np.ndarray) -> np.ndarray:
        return original(self, matrix) + 1e-9

    monkeypatch.setattr(ScaledBinaryLogisticPredictor, "predict_proba", off_by_a_little)
    assert isinstance(build_predictor(model, X[:1], 1e100), EstimatorPredictor)


def test_overflow_guard_is_skipped_only_when_no_valid_input_can_overflow() -> None:
    model = fitted(StandardScaler(), LogisticRegression())
    assert compile_linear(model, 1e100).always_finite  # type: ignore[union-attr]
    assert not compile_linear(model, 1e305).always_finite  # type: ignore[union-attr]
    extreme = np.full((1, X.shape[1]), 1e305)
    probabilities = compile_linear(model, 1e305).predict_proba(extreme)  # type: ignore[union-attr]
    assert probabilities.shape == (1, 2)  # no warning raised, whatever the values


def test_single_rows_in_plain_floats_agree_with_predict_proba() -> None:
    model = fitted(StandardScaler(), LogisticRegression())
    predictor = compile_linear(model, 1e100)
    assert predictor is not None
    one_by_one = np.array([predictor.probabilities(X[i : i + 1])[0] for i in range(len(X))])
    np.testing.assert_allclose(one_by_one, model.predict_proba(X), rtol=0, atol=1e-15)
    assert predictor.probabilities(X[:3]) == model.predict_proba(X[:3]).tolist()  # batches: bit for bit
