"""Column kinds: inferred from the raw data by `prepare`, written to data/prepared/schema.json,
and read back by every later stage (the format is documented in `contract`)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import FEATURE_KINDS, MISSING_STRING, PARAMS_FILE, SCHEMA_VERSION
from pipeline.errors import PipelineError

TASKS = ("classification", "regression")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "numeric" | "categorical"
    categories: tuple[str, ...] | None  # sorted levels seen in the training split (categorical)
    missing: bool  # whether the raw data had gaps in this column


@dataclass(frozen=True)
class Schema:
    target: str
    task: str  # "classification" | "regression"
    features: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.features]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "target": self.target,
            "task": self.task,
            "features": [
                {
                    "name": c.name,
                    "kind": c.kind,
                    "categories": list(c.categories) if c.categories is not None else None,
                    "missing": c.missing,
                }
                for c in self.features
            ],
        }


def schema_from_json(doc: Any, source: Path) -> Schema:
    """Parse schema.json, naming the file and the field that is wrong."""
    try:
        if doc["schema_version"] != SCHEMA_VERSION:
            raise PipelineError(
                f"{source}: schema_version {doc['schema_version']!r}, expected {SCHEMA_VERSION}"
            )
        if doc["task"] not in TASKS:
            raise PipelineError(f"{source}: task {doc['task']!r} is not one of {', '.join(TASKS)}")
        columns = []
        for f in doc["features"]:
            if f["kind"] not in FEATURE_KINDS:
                raise PipelineError(f"{source}: feature {f['name']!r}: unknown kind {f['kind']!r}")
            cats = f["categories"]
            columns.append(
                Column(str(f["name"]), f["kind"], tuple(cats) if cats is not None else None, f["missing"])
            )
        return Schema(target=str(doc["target"]), task=doc["task"], features=tuple(columns))
    except (KeyError, TypeError) as exc:
        raise PipelineError(f"{source}: malformed schema ({exc.__class__.__name__}: {exc})") from None


def read_schema(path: Path) -> Schema:
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path}: not valid JSON: {exc}") from None
    return schema_from_json(doc, path)


def _as_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value


def infer_kinds(
    columns: Mapping[str, Sequence[str | None]],
    *,
    overrides: Mapping[str, str],
    max_categories: int,
    source: Path,
) -> dict[str, str]:
    """name -> "numeric" | "categorical": numeric when every present value parses as a finite number.

    Refuses (naming the column and, for a value, its line) an entirely empty column, a numeric
    override on text, a non-finite number, and a categorical column over `max_categories` levels.
    """
    unknown = sorted(set(overrides) - set(columns))
    if unknown:
        raise PipelineError(
            f"{PARAMS_FILE}: prepare.column_kinds: no column {unknown[0]!r} in {source} "
            f"(features: {', '.join(columns)})"
        )
    kinds: dict[str, str] = {}
    for name, values in columns.items():
        present = [(i, v) for i, v in enumerate(values) if v is not None]
        if not present:
            raise PipelineError(f"{source}: column {name!r} is entirely empty")
        parsed = [(i, v, _as_number(v)) for i, v in present]
        text = next(((i, v) for i, v, num in parsed if num is None), None)
        kind = overrides.get(name) or ("numeric" if text is None else "categorical")
        if kind == "numeric":
            if text is not None:
                raise PipelineError(
                    f"{source}: line {text[0] + 2}, column {name!r}: {text[1]!r} is not a number "
                    f"(prepare.column_kinds says numeric)"
                )
            bad = next(((i, v) for i, v, num in parsed if num is not None and not math.isfinite(num)), None)
            if bad is not None:
                raise PipelineError(
                    f"{source}: line {bad[0] + 2}, column {name!r}: {bad[1]!r} is not a finite number"
                )
        else:
            levels = {v for _, v in present}
            if MISSING_STRING in levels:
                raise PipelineError(
                    f"{source}: column {name!r}: the value {MISSING_STRING!r} is reserved for missing values"
                )
            if len(levels) > max_categories:
                raise PipelineError(
                    f"{source}: column {name!r} has {len(levels)} distinct values, over "
                    f"prepare.max_categories={max_categories} (an ID column? set its kind or raise the limit)"
                )
        kinds[name] = kind
    return kinds
