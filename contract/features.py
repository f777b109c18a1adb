"""One feature record for every document that lists the model's features (`data/prepared/schema.json`,
`models/metadata.json`), and the model's input columns derived from them.

A feature: {"name": str, "kind": "numeric"|"categorical"|"date",
            "categories": [str, ...] | null,   # sorted levels seen in training (categorical)
            "missing": bool}                   # whether the raw data had gaps in it
A date feature (ISO 8601 text, `contract.dates`) reaches the model as three numeric columns,
`<name>:days`, `<name>:month`, `<name>:weekday`; the model's input columns are the features that are
not dates, in order, then the dates' parts (`contract.dates.model_order`). Requests and the prepared
CSVs carry the date's text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.dates import model_order, part_names
from contract.errors import ContractError, require
from contract.paths import FEATURE_KINDS


@dataclass(frozen=True)
class Feature:
    """One input column as the model was trained on it."""

    name: str
    kind: str  # "numeric" | "categorical" | "date" (ISO 8601 text; the model takes its parts)
    categories: tuple[str, ...] | None  # sorted levels seen in training (categorical only)
    missing: bool  # whether the training data had gaps in it

    @property
    def numeric(self) -> bool:
        return self.kind == "numeric"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "categories": list(self.categories) if self.categories is not None else None,
            "missing": self.missing,
        }

    @classmethod
    def from_json(cls, entry: Any, where: str) -> Feature:
        """One feature record; `where` names it in an error (`<file>: features[3]`)."""
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise ContractError(f"{where} has no name")
        kind = entry.get("kind")
        if kind not in FEATURE_KINDS:
            raise ContractError(f"{where} ({entry['name']}): kind {kind!r} is not one of {FEATURE_KINDS}")
        categories = entry.get("categories")
        if kind == "categorical":
            if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
                raise ContractError(f"{where} ({entry['name']}): categories must be a list of strings")
            categories = tuple(categories)
        else:
            categories = None
        return cls(entry["name"], kind, categories, bool(entry.get("missing", False)))


def features_from_json(doc: dict[str, Any], path: Path | str) -> tuple[Feature, ...]:
    """A document's `features`: each record checked, the names unique and none a date's part."""
    entries = require(doc, "features", list, path)
    features = tuple(Feature.from_json(entry, f"{path}: features[{i}]") for i, entry in enumerate(entries))
    names = [f.name for f in features]
    if not names or len(set(names)) != len(names):
        raise ContractError(f"{path}: feature names are empty or not unique")
    parts = {part for f in features if f.kind == "date" for part in part_names(f.name)}
    if parts & set(names):
        raise ContractError(f"{path}: feature {sorted(parts & set(names))[0]!r} is also a date's part")
    return features


class FeatureList:
    """What every document that lists the features offers: their names and the model's input columns."""

    features: tuple[Feature, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def model_features(self) -> tuple[Feature, ...]:
        """The model's input columns: the features that are not dates, then each date's parts
        (numeric; contract.dates). Requests name `features`; the preprocessing, the ONNX graph and
        the runners take these."""
        return model_features(self.features)


def model_features(features: Sequence[Feature]) -> tuple[Feature, ...]:
    """The model's input columns (contract.dates.model_order): the features that are not dates, then
    each date's parts as numeric columns. Requests name the features; the model takes these."""
    by_name = {f.name: f for f in features}
    missing = {part: f.missing for f in features if f.kind == "date" for part in part_names(f.name)}
    return tuple(
        by_name.get(name) or Feature(name, "numeric", None, missing[name])
        for name, _ in model_order((f.name, f.kind) for f in features)
    )
