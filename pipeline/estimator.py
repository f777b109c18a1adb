"""The estimator params.yaml names: resolved, checked and built, or refused naming the key."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from contract import PARAMS_FILE
from pipeline.errors import PipelineError
from pipeline.params import EstimatorParams, HyperParam

CLASS_KEY = "train.estimator.class"
PARAMS_KEY = "train.estimator.params"
# Families whose splits do not care about feature scale: no scaler in front of them.
SCALE_FREE_MODULES = ("sklearn.tree", "sklearn.ensemble", "xgboost", "lightgbm", "contract.estimators")
# Estimators from outside scikit-learn, by their scikit-learn API: an allow-list, never an
# arbitrary import. Each with the hyperparameters that make its training bit-for-bit (one thread;
# LightGBM's own switches for a reproducible histogram build); the seed is random_state.
OTHER_LIBRARIES: dict[str, dict[str, HyperParam]] = {
    "xgboost.XGBClassifier": {"n_jobs": 1},
    "xgboost.XGBRegressor": {"n_jobs": 1},
    "lightgbm.LGBMClassifier": {"n_jobs": 1, "deterministic": True, "force_row_wise": True, "verbose": -1},
    "lightgbm.LGBMRegressor": {"n_jobs": 1, "deterministic": True, "force_row_wise": True, "verbose": -1},
}
# The class actually fitted, where it differs: XGBClassifier learns labels 0..n-1 only.
FITTED_CLASS = {"xgboost.XGBClassifier": "contract.estimators.LabelledXGBClassifier"}


def _library_class(dotted: str, where: str) -> type[BaseEstimator]:
    module_name, _, name = FITTED_CLASS.get(dotted, dotted).rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise PipelineError(f"{where}: {dotted.split('.')[0]} is not installed") from None
    cls: type[BaseEstimator] = getattr(module, name)
    return cls


def resolve_class(dotted: str) -> type[BaseEstimator]:
    """`sklearn.x.Y` -> the class, if it is one of scikit-learn's own classifiers or regressors,
    or one of OTHER_LIBRARIES."""
    where = f"{PARAMS_FILE}: {CLASS_KEY}: {dotted!r}"
    if dotted in OTHER_LIBRARIES:
        return _library_class(dotted, where)
    module_name, _, name = dotted.rpartition(".")
    if not module_name or module_name.split(".")[0] != "sklearn":
        raise PipelineError(
            f"{where}: not a scikit-learn class (expected sklearn.<module>.<Class>, or one of "
            f"{', '.join(OTHER_LIBRARIES)})"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise PipelineError(f"{where}: no module {module_name!r}") from None
    cls = getattr(module, name, None)
    if not inspect.isclass(cls) or not issubclass(cls, BaseEstimator):
        raise PipelineError(f"{where}: {module_name} has no estimator class {name!r}")
    if inspect.isabstract(cls) or name.startswith("_"):
        raise PipelineError(f"{where}: not a public, concrete estimator")
    # The mixins, not the tags: reading tags needs an instance, and some constructors need arguments.
    if not issubclass(cls, ClassifierMixin | RegressorMixin):
        raise PipelineError(f"{where}: neither a classifier nor a regressor")
    return cls


def task_of(dotted: str) -> str:
    """'classification' or 'regression', as the estimator class decides."""
    return "classification" if issubclass(resolve_class(dotted), ClassifierMixin) else "regression"


def build_estimator(spec: EstimatorParams, *, seed: int) -> BaseEstimator:
    """Instantiate with the hyperparameters and let scikit-learn validate them now, not mid-fit."""
    cls = resolve_class(spec.class_)
    kwargs: dict[str, Any] = dict(spec.params)
    for key, value in OTHER_LIBRARIES.get(spec.class_, {}).items():
        if kwargs.get(key, value) != value:
            raise PipelineError(
                f"{PARAMS_FILE}: {PARAMS_KEY}: {key}: {kwargs[key]!r}, but {spec.class_} trains with "
                f"{key}={value!r} here, so that the model's bytes do not depend on the host"
            )
        kwargs[key] = value
    try:
        estimator = cls(**kwargs)
    except TypeError as exc:
        raise PipelineError(f"{PARAMS_FILE}: {PARAMS_KEY}: {spec.class_} rejects them: {exc}") from None
    # The service answers per-class probabilities, and the gate compares them: a classifier
    # without predict_proba (RidgeClassifier; SVC unless probability=True) cannot be served.
    if isinstance(estimator, ClassifierMixin) and not hasattr(estimator, "predict_proba"):
        raise PipelineError(
            f"{PARAMS_FILE}: {CLASS_KEY}: {spec.class_} gives no class probabilities with these "
            f"{PARAMS_KEY} (no predict_proba): choose a classifier or hyperparameters that do"
        )
    if "random_state" in estimator.get_params() and "random_state" not in kwargs:
        estimator.set_params(random_state=seed)
    validate = getattr(estimator, "_validate_params", None)
    # scikit-learn's own declare their constraints; the other libraries check theirs in fit.
    if callable(validate) and hasattr(estimator, "_parameter_constraints"):
        try:
            validate()
        except (ValueError, TypeError) as exc:
            first = str(exc).splitlines()[0]
            raise PipelineError(f"{PARAMS_FILE}: {PARAMS_KEY}: {first}") from None
    return estimator


def needs_scaling(estimator: BaseEstimator) -> bool:
    """Trees split on order, not scale; everything else gets standardised inputs."""
    return not type(estimator).__module__.startswith(SCALE_FREE_MODULES)
