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


# A column whose present cells are at least this share numbers, with at most MAX_ODD_TOKENS
# distinct other values, is numbers with a few missing-value markers, not a category.
MOSTLY_NUMERIC = 0.8
MAX_ODD_TOKENS = 5


def _cells_of(items: Sequence[tuple[int, str]], limit: int = 3) -> str:
    shown = [f"{v!r} (line {i + 2})" for i, v in items[:limit]]
    return ", ".join(shown) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _numeric_kind(name: str, parsed: Sequence[tuple[int, str, float | None]], source: Path) -> str:
    """Why `name` is numeric, or an error naming its first non-finite cell."""
    bad = next(((i, v) for i, v, num in parsed if num is not None and not math.isfinite(num)), None)
    if bad is not None:
        raise PipelineError(
            f"{source}: line {bad[0] + 2}, column {name!r}: {bad[1]!r} is not a finite number"
        )
    distinct = len({num for _, _, num in parsed})
    if (
        distinct == len(parsed)
        and distinct > MAX_ODD_TOKENS
        and all(num is not None and num.is_integer() for _, _, num in parsed)
    ):
        return (
            f"numeric: every value a number; all {distinct} distinct whole numbers "
            f"(an ID? prepare.drop_columns leaves it out)"
        )
    return f"numeric: every value a number ({distinct} distinct)"


def infer_kinds(
    columns: Mapping[str, Sequence[str | None]],
    *,
    overrides: Mapping[str, str],
    max_categories: int,
    source: Path,
    reasons: dict[str, str] | None = None,
) -> dict[str, str]:
    """name -> "numeric" | "categorical": numeric when every present value parses as a finite number.
    `reasons`, if given, receives each column's kind and why (the stage summary prints them).

    Refuses (naming the column and, for a value, its line) an entirely empty column, a numeric
    override on text, a non-finite number, a column of numbers with a few other tokens (listing
    them: missing-value markers, most likely), and a categorical column over `max_categories` levels.
    """
    unknown = sorted(set(overrides) - set(columns))
    if unknown:
        raise PipelineError(
            f"{PARAMS_FILE}: prepare.column_kinds: no column {unknown[0]!r} in {source} "
            f"(features: {', '.join(columns)})"
        )
    kinds: dict[str, str] = {}
    why: dict[str, str] = {} if reasons is None else reasons
    for name, values in columns.items():
        present = [(i, v) for i, v in enumerate(values) if v is not None]
        if not present:
            raise PipelineError(
                f"{source}: column {name!r} is entirely empty (prepare.drop_columns leaves it out)"
            )
        parsed = [(i, v, _as_number(v)) for i, v in present]
        text = [(i, v) for i, v, num in parsed if num is None]
        override = overrides.get(name)
        kind = override or ("numeric" if not text else "categorical")
        if kind == "numeric":
            if text:
                raise PipelineError(
                    f"{source}: line {text[0][0] + 2}, column {name!r}: {text[0][1]!r} is not a number "
                    f"(prepare.column_kinds says numeric)"
                )
            why[name] = _numeric_kind(name, parsed, source)
            if override:
                why[name] = "numeric: set in prepare.column_kinds"
        else:
            tokens = sorted({v for _, v in text})
            if (
                not override
                and len(text) < len(present)
                and len(tokens) <= MAX_ODD_TOKENS
                and (len(present) - len(text) >= MOSTLY_NUMERIC * len(present))
            ):
                raise PipelineError(
                    f"{source}: column {name!r}: numbers except {len(text)} cell(s) holding "
                    f"{', '.join(map(repr, tokens))} (first: {_cells_of(text, 1)}): if they mean "
                    f'"no value", add them to prepare.missing_values; if the column is a category, '
                    f"set prepare.column_kinds: {{{name}: categorical}}"
                )
            levels = {v for _, v in present}
            if MISSING_STRING in levels:
                raise PipelineError(
                    f"{source}: column {name!r}: the value {MISSING_STRING!r} is reserved for missing values"
                )
            if len(levels) > max_categories:
                raise PipelineError(
                    f"{source}: column {name!r} has {len(levels)} distinct values, over "
                    f"prepare.max_categories={max_categories} (an ID or free text? prepare.drop_columns: "
                    f"[{name}] leaves it out; a category with that many levels: raise the limit)"
                )
            why[name] = (
                "categorical: set in prepare.column_kinds"
                if override
                else f"categorical: text such as {text[0][1]!r} (line {text[0][0] + 2})"
            ) + f", {len(levels)} levels"
        kinds[name] = kind
    return kinds
