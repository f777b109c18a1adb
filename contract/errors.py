"""The contract's one error, bad input on one line naming the file and the field, and the field checks
every document's `from_json` shares."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, TypeGuard


class ContractError(RuntimeError):
    """An artifact is missing, malformed or not the one dvc.lock records; one line saying why."""


_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number"}


def describe_type(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)


def require(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path | str) -> Any:
    """`doc[key]` if it is a `kind` (a boolean is no number), else one line naming the file and key."""
    value = doc.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ContractError(f"{path}: {key} is missing or not {describe_type(kind)}")
    return value


def finite_number(value: Any) -> TypeGuard[float]:
    """A JSON number that is finite; a boolean is no number."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def versioned_object(doc: Any, path: Path | str, version: int) -> dict[str, Any]:
    """A document of the pipeline's: a JSON object at `version` of its format (else: re-run it)."""
    if not isinstance(doc, dict):
        raise ContractError(f"{path} is not a JSON object")
    if doc.get("schema_version") != version:
        raise ContractError(
            f"{path}: schema_version {doc.get('schema_version')!r} is not {version}: run `dvc repro`"
        )
    return doc
