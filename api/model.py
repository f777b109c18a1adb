"""Verifies the model artifacts against dvc.lock, then builds the predictor from the JSON export.

Nothing is unpickled: `models/model.json` (the pipeline's `export` stage) holds the fitted
parameters, and it must name the md5 of the very `models/model.joblib` that dvc.lock records.
"""

import hashlib
import math
import platform
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from api.integrity import ModelIntegrityError, load_dvc_lock, md5_hex, verified_bytes
from api.predictor import AGREEMENT_TOLERANCE, Predictor, ScaledBinaryLogisticPredictor
from api.settings import Settings
from api.validation import MAX_ABS_VALUE

_NUMERIC_DTYPES = frozenset({"float64", "float32", "int64", "int32"})
_SERVING_PACKAGES = ("numpy", "fastapi", "pydantic", "uvicorn")
EXPORT_KIND = "standard_scaler+binary_logistic_regression"


@dataclass(frozen=True)
class VerifiedArtifacts:
    """Model bytes whose md5 matched dvc.lock, with the metadata that describes them."""

    model_md5: str
    export: dict[str, Any]
    export_md5: str
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
    trained_with: str  # the scikit-learn version that fitted the model


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
    """Lock entries and md5s of model, export and metadata; the export's shape and provenance."""
    lock_path = settings.dvc_lock_path
    lock = load_dvc_lock(lock_path)
    meta_raw, meta_md5 = verified_bytes(settings.metadata_path, lock, lock_path, "metadata")
    metadata, names, classes = _parse_metadata(meta_raw, settings.metadata_path)
    # The pickle is not loaded, but it is the model of record: its md5 is the served version, and
    # the export must say it was made from exactly these bytes.
    _, model_md5 = verified_bytes(settings.model_path, lock, lock_path, "model")
    export_raw, export_md5 = verified_bytes(settings.export_path, lock, lock_path, "model export")
    export = parse_export(export_raw, settings.export_path, names, classes)
    source = export["source"].get("md5") if isinstance(export.get("source"), dict) else None
    if source != model_md5:
        raise ModelIntegrityError(
            f"{settings.export_path} was exported from a model with md5 {source}, "
            f"not from {settings.model_path} ({model_md5}): run `dvc repro`"
        )
    return VerifiedArtifacts(model_md5, export, export_md5, metadata, meta_md5, names, classes)


def _floats(value: Any, n: int, what: str, path: Path) -> list[float]:
    if not isinstance(value, list) or len(value) != n:
        raise ModelIntegrityError(f"{path}: {what} must be a list of {n} numbers")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise ModelIntegrityError(f"{path}: {what} holds a value that is not a finite number")
    return [float(v) for v in value]


def parse_export(raw: bytes, path: Path, names: tuple[str, ...], classes: tuple[str, ...]) -> dict[str, Any]:
    """The export document, refusing one that does not fit the metadata's features and classes."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ModelIntegrityError(f"{path} is not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != 1 or doc.get("kind") != EXPORT_KIND:
        raise ModelIntegrityError(f"{path} is not a schema-1 {EXPORT_KIND} export")
    if tuple(doc.get("features") or ()) != names:
        raise ModelIntegrityError(f"{path} features differ from the metadata's (names or order)")
    if tuple(doc.get("classes") or ()) != classes or len(classes) != 2:
        raise ModelIntegrityError(f"{path} classes differ from the metadata's {list(classes)}")
    n = len(names)
    for key in ("mean", "scale"):  # null when the scaler was fitted without centring or scaling
        if key not in doc:
            raise ModelIntegrityError(f"{path}: no {key!r} (a list of {n} numbers, or null)")
        if doc[key] is not None:
            doc[key] = _floats(doc[key], n, key, path)
    if doc.get("scale") is not None and 0.0 in doc["scale"]:
        raise ModelIntegrityError(f"{path}: scale holds a zero")
    doc["coef"] = _floats(doc.get("coef"), n, "coef", path)
    [doc["intercept"]] = _floats([doc.get("intercept")], 1, "intercept", path)
    check = doc.get("check")
    if not isinstance(check, dict) or not isinstance(check.get("rows"), list) or not check["rows"]:
        raise ModelIntegrityError(f"{path}: check.rows is missing or empty")
    rows = [_floats(r, n, "a check row", path) for r in check["rows"]]
    expected = [_floats(p, 2, "check probabilities", path) for p in check.get("probabilities") or []]
    if len(expected) != len(rows):
        raise ModelIntegrityError(f"{path}: check.probabilities must have one pair per check row")
    doc["check"] = {"rows": rows, "probabilities": expected}
    return doc


def build_predictor(export: dict[str, Any], path: Path, max_abs_input: float) -> Predictor:
    """The predictor for a parsed export, after it reproduces the export's recorded probabilities.

    `max_abs_input` is the bound the request validator enforces on every feature value.
    """

    def array(key: str) -> np.ndarray | None:
        return None if export[key] is None else np.array(export[key], dtype=np.float64)

    coef = array("coef")
    assert coef is not None  # checked by parse_export
    predictor = ScaledBinaryLogisticPredictor(
        array("mean"), array("scale"), coef, export["intercept"], max_abs_input
    )
    rows = np.array(export["check"]["rows"], dtype=np.float64)
    expected = np.array(export["check"]["probabilities"], dtype=np.float64)
    batch = predictor.predict_proba(rows)
    one_by_one = np.array([predictor.probabilities(rows[i : i + 1])[0] for i in range(len(rows))])
    for got in (batch, one_by_one):
        worst = float(np.max(np.abs(got - expected)))
        if not worst <= AGREEMENT_TOLERANCE:
            raise ModelIntegrityError(
                f"{path}: served probabilities differ from the recorded ones by {worst:.3g} "
                f"(allowed {AGREEMENT_TOLERANCE:g}): refusing to serve them"
            )
    return predictor


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


def _describe(settings: Settings, artifacts: VerifiedArtifacts, predictor: Predictor) -> dict[str, Any]:
    """The GET /model document: what is served, how it was trained, and from which locks."""
    meta = artifacts.metadata
    return {
        "model_version": artifacts.model_md5,
        "estimator": artifacts.export.get("estimator"),
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
            "export": {"path": str(settings.export_path), "md5": artifacts.export_md5},
            "metadata": {"path": str(settings.metadata_path), "md5": artifacts.metadata_md5},
        },
        "locks": {
            "dvc_lock": _file_digests(settings.dvc_lock_path),
            "requirements": _file_digests(settings.requirements_path),
        },
    }


def load_model(settings: Settings) -> ServedModel:
    """Verify every artifact, then build the predictor from the verified export bytes."""
    artifacts = verify_artifacts(settings)
    predictor = build_predictor(artifacts.export, settings.export_path, MAX_ABS_VALUE)
    example = {name: float(artifacts.metadata["example"][name]) for name in artifacts.feature_names}
    return ServedModel(
        version=artifacts.model_md5,
        feature_names=artifacts.feature_names,
        classes=artifacts.classes,
        example=example,
        predictor=predictor,
        description=_describe(settings, artifacts, predictor),
        trained_with=str(artifacts.metadata.get("library_versions", {}).get("scikit-learn", "unknown")),
    )
