"""Typed, validated view of params.yaml: one section per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.errors import PipelineError

PARAMS_FILE = Path("params.yaml")


class _Section(BaseModel):
    # strict: "1.0" in YAML is a string, and a typo'd key must not be silently ignored.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PrepareParams(_Section):
    raw_data: str = Field(min_length=1)
    target: str = Field(min_length=1)
    test_size: float = Field(gt=0.0, lt=1.0)
    seed: int = Field(ge=0, le=2**32 - 1)


class TrainParams(_Section):
    C: float = Field(gt=0.0)
    max_iter: int = Field(gt=0)
    tol: float = Field(gt=0.0)
    seed: int = Field(ge=0, le=2**32 - 1)


class EvaluateParams(_Section):
    positive_class: str = Field(min_length=1)


class Params(_Section):
    prepare: PrepareParams
    train: TrainParams
    evaluate: EvaluateParams


def parse_params(raw: Any, *, source: str = str(PARAMS_FILE)) -> Params:
    """Validate an already-parsed params mapping; errors name the file and the dotted key."""
    if not isinstance(raw, dict):
        raise PipelineError(f"{source}: expected a mapping of stage sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = "missing" if err["type"] == "missing" else err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        extra = f" (got {err['input']!r})" if err["type"] not in {"missing", "extra_forbidden"} else ""
        raise PipelineError(f"{source}: {key}: {msg}{extra}") from None


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_params(raw, source=str(path))
