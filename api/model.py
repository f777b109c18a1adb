"""Verifies the model artifacts against dvc.lock, then (and only then) unpickles the model."""

import hashlib
import io
import platform
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson

from api.integrity import (
    ModelIntegrityError,
    check_library_version,
    load_dvc_lock,
    md5_hex,
    verified_bytes,
)
from api.predictor import Predictor, build_predictor
from api.settings import Settings
from api.validation import MAX_ABS_VALUE

_NUMERIC_DTYPES = frozenset({"float64", "float32", "int64", "int32"})
_SERVING_PACKAGES = ("scikit-learn", "numpy", "scipy", "joblib", "fastapi", "pydantic", "uvicorn")


@dataclass(frozen=True)
class VerifiedArtifacts:
    """Model bytes whose md5 matched dvc.lock, with the metadata that describes them."""

    model_bytes: bytes
    model_md5: str
    metadata: dict[str, Any]
    metadata_md5: str
    feature_names: tuple[str, ...]
    classes: tuple[str, ...]


@dataclass(frozen=True)
class ServedModel:
    """The loaded, verified model and everything the routes need to describe it."""

    version: str
    feature_names: tuple[str, ...]
    classes: tuple[str, ...]
    example: dict[str, float]
    predictor: Predictor
    description: dict[str, Any]


def _parse_metadata(raw: bytes, path: Path) -> tuple[dict[str, Any], tuple[str, ...], tuple[str, ...]]:
    """Metadata document plus its feature names and class labels, refusing malformed ones."""
    try:
        meta = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ModelIntegrityError(f"{path} is not valid JSON") from None
    try:
        features = meta["features"]
        names = tuple(str(f["name"]) for f in features)
        dtypes = {str(f["dtype"]) for f in features}
        classes = tuple(str(c) for c in meta["classes"])
        example = meta["example"]
    except (KeyError, TypeError):
        raise ModelIntegrityError(f"{path} lacks features/classes/example in the expected shape") from None
    if not names or len(set(names)) != len(names):
        raise ModelIntegrityError(f"{path} feature names are empty or not unique")
    if not dtypes <= _NUMERIC_DTYPES:
        raise ModelIntegrityError(f"{path} has non-numeric feature dtypes {sorted(dtypes - _NUMERIC_DTYPES)}")
    if not isinstance(example, dict) or set(example) != set(names):
        raise ModelIntegrityError(f"{path} example does not have exactly the model's features")
    if len(classes) < 2:
        raise ModelIntegrityError(f"{path} lists fewer than two classes")
    return meta, names, classes


def verify_artifacts(settings: Settings) -> VerifiedArtifacts:
    """All checks that need no unpickling: lock entries, md5s, metadata shape, sklearn version."""
    lock_path = settings.dvc_lock_path
    lock = load_dvc_lock(lock_path)
    meta_raw, meta_md5 = verified_bytes(settings.metadata_path, lock, lock_path, "metadata")
    metadata, names, classes = _parse_metadata(meta_raw, settings.metadata_path)
    check_library_version(metadata)
    model_bytes, model_md5 = verified_bytes(settings.model_path, lock, lock_path, "model")
    return VerifiedArtifacts(model_bytes, model_md5, metadata, meta_md5, names, classes)


def _check_estimator(estimator: Any, artifacts: VerifiedArtifacts) -> None:
    """The unpickled estimator must match what the metadata says about it."""
    if not hasattr(estimator, "predict_proba"):
        raise ModelIntegrityError(f"{type(estimator).__name__} has no predict_proba")
    model_classes = tuple(str(c) for c in getattr(estimator, "classes_", ()))
    if model_classes != artifacts.classes:
        raise ModelIntegrityError(f"model classes {model_classes} differ from metadata {artifacts.classes}")
    n_in = getattr(estimator, "n_features_in_", len(artifacts.feature_names))
    if n_in != len(artifacts.feature_names):
        raise ModelIntegrityError(
            f"model expects {n_in} features, metadata lists {len(artifacts.feature_names)}"
        )
    names_in = getattr(estimator, "feature_names_in_", None)
    if names_in is not None and tuple(map(str, names_in)) != artifacts.feature_names:
        raise ModelIntegrityError("model feature names differ from the metadata's order")


def _installed(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _file_digests(path: Path | None) -> dict[str, str] | None:
    """md5 and sha256 of a lock file, or None when it is not there."""
    if path is None or not path.is_file():
        return None
    data = path.read_bytes()
    return {"path": str(path), "md5": md5_hex(data), "sha256": hashlib.sha256(data).hexdigest()}


def _describe(
    settings: Settings, artifacts: VerifiedArtifacts, estimator: Any, predictor: Predictor
) -> dict[str, Any]:
    """The GET /model document: what is served, how it was trained, and from which locks."""
    meta = artifacts.metadata
    return {
        "model_version": artifacts.model_md5,
        "estimator": " ".join(repr(estimator).split()),
        "predictor": predictor.kind,
        "target": meta.get("target"),
        "classes": list(artifacts.classes),
        "features": meta["features"],
        "example": meta["example"],
        "params": meta.get("params", {}),
        "metrics": meta.get("metrics", {}),
        "library_versions": {
            "trained_with": meta.get("library_versions", {}),
            "serving": {"python": platform.python_version(), **{p: _installed(p) for p in _SERVING_PACKAGES}},
        },
        "artifacts": {
            "model": {"path": str(settings.model_path), "md5": artifacts.model_md5},
            "metadata": {"path": str(settings.metadata_path), "md5": artifacts.metadata_md5},
        },
        "locks": {
            "dvc_lock": _file_digests(settings.dvc_lock_path),
            "requirements": _file_digests(settings.requirements_path),
        },
    }


def load_model(settings: Settings) -> ServedModel:
    """Verify, then unpickle exactly the bytes that were verified, then build the predictor."""
    artifacts = verify_artifacts(settings)
    try:
        estimator = joblib.load(io.BytesIO(artifacts.model_bytes))
    except Exception as exc:  # a verified file that still fails to load: report it in one line
        raise ModelIntegrityError(
            f"cannot unpickle {settings.model_path}: {exc.__class__.__name__}: {exc}"
        ) from None
    _check_estimator(estimator, artifacts)
    example = {name: float(artifacts.metadata["example"][name]) for name in artifacts.feature_names}
    example_row = np.array([[example[name] for name in artifacts.feature_names]], dtype=np.float64)
    predictor = build_predictor(estimator, example_row, MAX_ABS_VALUE)
    return ServedModel(
        version=artifacts.model_md5,
        feature_names=artifacts.feature_names,
        classes=artifacts.classes,
        example=example,
        predictor=predictor,
        description=_describe(settings, artifacts, estimator, predictor),
    )
