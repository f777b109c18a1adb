"""`models/metadata.json` (stage evaluate): what the service shows and validates against.

{"schema_version": 2, "target": str, "task": "binary"|"multiclass"|"regression",
 "features": [feature, ...],              # contract.features, as in schema.json, model order
 "classes": [str, ...] | null,            # null for regression
 "example": {feature: value | null},      # one real row
 "estimator": {"class": dotted name as in params.yaml, "params": {...}},
 "library_versions": {...}, "params": {...}, "metrics": {...}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract.errors import ContractError, require, versioned_object
from contract.features import Feature, FeatureList, features_from_json
from contract.paths import METADATA_SCHEMA_VERSION, TASKS


@dataclass(frozen=True)
class Metadata(FeatureList):
    target: str | None
    task: str  # "binary" | "multiclass" | "regression"
    features: tuple[Feature, ...]
    classes: tuple[str, ...]  # empty for regression
    example: dict[str, Any]
    estimator: dict[str, Any] | None = None
    library_versions: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def is_classifier(self) -> bool:
        return self.task != "regression"

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": METADATA_SCHEMA_VERSION,
            "target": self.target,
            "task": self.task,
            "features": [f.to_json() for f in self.features],
            "classes": list(self.classes) if self.is_classifier else None,
            "example": self.example,
            "estimator": self.estimator,
            "library_versions": self.library_versions,
            "params": self.params,
            "metrics": self.metrics,
        }

    @classmethod
    def from_json(cls, doc: Any, path: Path | str) -> Metadata:
        """models/metadata.json (schema 2), refusing what the service could not validate against."""
        doc = versioned_object(doc, path, METADATA_SCHEMA_VERSION)
        task = doc.get("task")
        if task not in TASKS:
            raise ContractError(f"{path}: task {task!r} is not one of {TASKS}")
        features = features_from_json(doc, path)
        names = [f.name for f in features]
        classes: tuple[str, ...] = ()
        if task == "regression":
            if doc.get("classes") is not None:
                raise ContractError(f"{path}: classes must be null for a regression model")
        else:
            raw_classes = require(doc, "classes", list, path)
            classes = tuple(str(c) for c in raw_classes)
            wanted = "exactly 2" if task == "binary" else "at least 3"
            if len(classes) != 2 if task == "binary" else len(classes) < 3:
                raise ContractError(f"{path}: a {task} model needs {wanted} classes, got {len(classes)}")
            if len(set(classes)) != len(classes):
                raise ContractError(f"{path}: classes are not unique")
        example = require(doc, "example", dict, path)
        if set(example) != set(names):
            raise ContractError(f"{path}: example does not have exactly the model's features")
        target = doc.get("target")
        estimator = doc.get("estimator")
        return cls(
            target=target if isinstance(target, str) else None,
            task=task,
            features=features,
            classes=classes,
            example=example,
            estimator=estimator if isinstance(estimator, dict) else None,
            library_versions=_object(doc, "library_versions"),
            params=_object(doc, "params"),
            metrics=_object(doc, "metrics"),
        )


def _object(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def estimator_class(doc: dict[str, Any], path: Path | str) -> str:
    """The dotted class name of the model's estimator (what the image's lock follows)."""
    estimator = require(doc, "estimator", dict, path)
    if not isinstance(estimator.get("class"), str):
        raise ContractError(f"{path}: estimator.class is missing or not a string")
    return str(estimator["class"])
