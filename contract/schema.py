"""`data/prepared/schema.json` (stage prepare): the inferred column types.

{"schema_version": 1, "target": str, "task": "classification"|"regression",
 "features": [feature, ...]}            # contract.features, in the raw data's column order
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.errors import ContractError, require, versioned_object
from contract.features import Feature, FeatureList, features_from_json
from contract.paths import SCHEMA_VERSION

TASKS = ("classification", "regression")


@dataclass(frozen=True)
class Schema(FeatureList):
    target: str
    task: str  # "classification" | "regression"
    features: tuple[Feature, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "target": self.target,
            "task": self.task,
            "features": [c.to_json() for c in self.features],
        }

    @classmethod
    def from_json(cls, doc: Any, source: Path | str) -> Schema:
        """Parse schema.json, naming the file and the field that is wrong."""
        doc = versioned_object(doc, source, SCHEMA_VERSION)
        if doc.get("task") not in TASKS:
            raise ContractError(f"{source}: task {doc.get('task')!r} is not one of {', '.join(TASKS)}")
        target = require(doc, "target", str, source)
        return cls(target=target, task=doc["task"], features=features_from_json(doc, source))
