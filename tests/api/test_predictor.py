"""The served predictor, built from the JSON export, reproduces scikit-learn's predict_proba."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from scipy.special import expit as scipy_expit  # type: ignore[import-untyped, unused-ignore]
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from api.integrity import ModelIntegrityError
from api.model import build_predictor, parse_export
from api.predictor import Predictor, expit
from pipeline.export import export_linear
from tests.api.support import REPO_ROOT

RNG = np.random.default_rng(0)
X = RNG.normal(size=(200, 4)) * [1, 10, 100, 0.01] + [0, 5, 500, 0]
Y = np.where(X[:, 0] + X[:, 1] / 10 > 0.5, "yes", "no")
FEATURES = ("a", "b", "c", "d")
PATH = Path("models/model.json")


def fitted(scaler: StandardScaler | None = None) -> Pipeline:
    return Pipeline([("scale", scaler or StandardScaler()), ("clf", LogisticRegression())]).fit(X, Y)


def exported(model: Pipeline) -> dict[str, object]:
    """The export as the service reads it: written to JSON bytes and parsed back."""
    raw = orjson.dumps(export_linear(model, FEATURES, X[:8], model_md5="0" * 32))
    return parse_export(raw, PATH, FEATURES, ("no", "yes"))


def served(model: Pipeline, max_abs_input: float = 1e100) -> Predictor:
    return build_predictor(exported(model), PATH, max_abs_input)


@pytest.mark.parametrize("with_mean", [True, False])
@pytest.mark.parametrize("with_std", [True, False])
def test_served_probabilities_equal_predict_proba_bit_for_bit(with_mean: bool, with_std: bool) -> None:
    model = fitted(StandardScaler(with_mean=with_mean, with_std=with_std))
    predictor = served(model)
    wide = np.vstack([X, X * 40, -X * 40])  # decisions far into both tails of the sigmoid
    np.testing.assert_array_equal(predictor.predict_proba(wide), model.predict_proba(wide))
    assert predictor.probabilities(wide[:3]) == model.predict_proba(wide[:3]).tolist()


def test_single_rows_in_plain_floats_agree_with_predict_proba() -> None:
    model = fitted()
    predictor = served(model)
    one_by_one = np.array([predictor.probabilities(X[i : i + 1])[0] for i in range(len(X))])
    np.testing.assert_allclose(one_by_one, model.predict_proba(X), rtol=0, atol=1e-15)


def test_expit_equals_scipy_bit_for_bit_including_overflow() -> None:
    values = np.concatenate(
        [
            RNG.normal(0, 8, 100_000),
            RNG.uniform(-800, 800, 10_000),
            [0.0, -0.0, 36.7, -36.7, 709.7, -709.7, -709.8, -745.2, -746.0, 1e300, -1e300],
            [np.inf, -np.inf],
        ]
    )
    assert expit(values.tolist()) == scipy_expit(values).tolist()
    assert np.isnan(expit([float("nan")])[0])


def test_start_up_refuses_an_export_that_does_not_reproduce_its_probabilities() -> None:
    doc = exported(fitted())
    doc["coef"] = [c * (1 + 1e-9) for c in doc["coef"]]  # type: ignore[attr-defined]
    with pytest.raises(ModelIntegrityError, match=r"models/model.json: served probabilities differ"):
        build_predictor(doc, PATH, 1e100)


def test_overflow_guard_is_skipped_only_when_no_valid_input_can_overflow() -> None:
    assert served(fitted(), 1e100).always_finite
    risky = served(fitted(), 1e305)
    assert not risky.always_finite
    probabilities = risky.probabilities(np.full((2, X.shape[1]), 1e305))
    assert len(probabilities) == 2  # no warning raised, whatever the values


def test_service_start_up_imports_no_scikit_learn_scipy_or_joblib() -> None:
    """They cost over a second of start-up; the service must not need them."""
    code = (
        "import sys; from fastapi.testclient import TestClient; from api.app import create_app; "
        "from tests.api.support import make_settings\n"
        "with TestClient(create_app(make_settings())) as c: assert c.get('/readyz').status_code == 200\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'joblib'}))"
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.pop(key)


def _set(key: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.__setitem__(key, value)


MALFORMED_EXPORTS = {
    "other-kind": (_set("kind", "random_forest"), "is not a schema-1"),
    "no-mean": (_without("mean"), "no 'mean'"),
    "short-coef": (lambda doc: doc["coef"].pop(), "coef must be a list of 4 numbers"),
    "text-in-scale": (lambda doc: doc["scale"].__setitem__(0, "1.5"), "scale holds a value that is not"),
    "zero-scale": (lambda doc: doc["scale"].__setitem__(0, 0.0), "scale holds a zero"),
    "no-intercept": (_without("intercept"), "intercept holds a value that is not"),
    "features-reordered": (lambda doc: doc["features"].reverse(), "features differ from the metadata"),
    "three-classes": (_set("classes", ["no", "yes", "maybe"]), "classes differ"),
    "no-check-rows": (lambda doc: doc["check"].pop("rows"), "check.rows is missing"),
    "unpaired-check": (lambda doc: doc["check"]["probabilities"].pop(), "one pair per check row"),
}


@pytest.mark.parametrize("case", MALFORMED_EXPORTS, ids=list(MALFORMED_EXPORTS))
def test_parse_export_refuses_malformed_documents_naming_the_file(case: str) -> None:
    change, fragment = MALFORMED_EXPORTS[case]
    doc = export_linear(fitted(), FEATURES, X[:3], model_md5="0" * 32)
    change(doc)
    with pytest.raises(ModelIntegrityError, match=re.escape(fragment)) as refused:
        parse_export(orjson.dumps(doc), PATH, FEATURES, ("no", "yes"))
    assert str(refused.value).startswith(str(PATH))


def test_parse_export_refuses_invalid_json() -> None:
    with pytest.raises(ModelIntegrityError, match=r"models/model\.json is not valid JSON"):
        parse_export(b'{"coef": [1.0,', PATH, FEATURES, ("no", "yes"))
