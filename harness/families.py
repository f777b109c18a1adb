"""The model families the tests put through the pipeline, the service and the image: the ones the
project promises to serve (LogisticRegression, RandomForest, HistGradientBoosting, GradientBoosting,
a regressor) and models that take the exact path. One table, shared by tests/pipeline and
tests/integration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Family:
    estimator: str
    params: dict[str, Any]
    data: str
    target: str
    path: str  # the serving path the family is expected to take
    precision: str | None  # the graph's precision, when ONNX

    def write_params(self, source: Path, dest: Path) -> None:
        """params.yaml from `source` with this family's data, target and estimator."""
        params = yaml.safe_load(source.read_text())
        params["prepare"].update(
            raw_data=f"data/raw/{self.data}", target=self.target, drop_missing_target=True
        )
        params["train"]["estimator"] = {"class": self.estimator, "params": self.params}
        params["evaluate"]["positive_class"] = None
        dest.write_text(yaml.safe_dump(params))


# Small ensembles keep the suite fast; the converters do not care about the tree count.
FAMILIES = {
    "logistic-regression": Family(
        "sklearn.linear_model.LogisticRegression",
        {"max_iter": 1000},
        "penguins.csv",
        "species",
        "onnx",
        "double",
    ),
    "random-forest": Family(
        "sklearn.ensemble.RandomForestClassifier",
        {"n_estimators": 20},
        "penguins.csv",
        "species",
        "onnx",
        "float",
    ),
    "hist-gradient-boosting": Family(
        "sklearn.ensemble.HistGradientBoostingClassifier",
        {"max_iter": 20},
        "penguins.csv",
        "species",
        "onnx",
        "float",
    ),
    "gradient-boosting": Family(
        "sklearn.ensemble.GradientBoostingClassifier",
        {"n_estimators": 20},
        "penguins.csv",
        "species",
        "onnx",
        "float",
    ),
    "hist-gradient-boosting-regressor": Family(
        "sklearn.ensemble.HistGradientBoostingRegressor",
        {"max_iter": 20},
        "penguins.csv",
        "body_mass_g",
        "onnx",
        "float",
    ),
    "random-forest-breast-cancer": Family(
        "sklearn.ensemble.RandomForestClassifier",
        {"n_estimators": 21},
        "breast_cancer.csv",
        "diagnosis",
        "onnx",
        "double",
    ),
    # 20 trees split 10/10 on one test row: scikit-learn's argmax takes the first class of the
    # exact tie, onnxruntime's float32 sums lean the other way. Labels differ: the exact path.
    "random-forest-vote-tie": Family(
        "sklearn.ensemble.RandomForestClassifier",
        {"n_estimators": 20},
        "breast_cancer.csv",
        "diagnosis",
        "sklearn",
        None,
    ),
    "xgboost": Family(
        "xgboost.XGBClassifier", {"n_estimators": 20}, "penguins.csv", "species", "onnx", "float"
    ),
    "xgboost-regressor": Family(
        "xgboost.XGBRegressor", {"n_estimators": 20}, "penguins.csv", "body_mass_g", "onnx", "float"
    ),
    "lightgbm": Family(
        "lightgbm.LGBMClassifier", {"n_estimators": 20}, "penguins.csv", "species", "onnx", "float"
    ),
    "lightgbm-regressor": Family(
        "lightgbm.LGBMRegressor", {"n_estimators": 20}, "penguins.csv", "body_mass_g", "onnx", "float"
    ),
    # Linear trees: the converter drops their leaves' linear models, so the gate fails and the model
    # takes the exact path; its image needs lightgbm's OpenMP runtime (libgomp.so.1).
    "lightgbm-exact": Family(
        "lightgbm.LGBMClassifier",
        {"n_estimators": 20, "linear_tree": True},
        "penguins.csv",
        "species",
        "sklearn",
        None,
    ),
    # Platt-scaled probabilities: predict() (what both paths serve) is not always their argmax.
    "svc": Family("sklearn.svm.SVC", {"probability": True}, "penguins.csv", "species", "onnx", "double"),
    # skl2onnx has no converter for it: the exact path.
    "nearest-centroid": Family(
        "sklearn.neighbors.NearestCentroid", {}, "penguins.csv", "species", "sklearn", None
    ),
}
