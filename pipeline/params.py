"""Typed, validated view of params.yaml: one section per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from contract import PARAMS_FILE
from pipeline.errors import PipelineError

# A hyperparameter value as YAML can write it (the estimator itself validates the value).
HyperParam = str | int | float | bool | None | list[Any] | dict[str, Any]


def _label_text(value: Any) -> Any:
    """A label or column name written as a bare number (`-S evaluate.positive_class=1` writes `1`,
    which YAML reads as an int) is the text the CSV holds. Booleans are not: in YAML 1.2 only
    true/false are, and a label spelled so must be quoted."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


# A column name or a class label: text, even when YAML read a bare number.
Label = Annotated[str, BeforeValidator(_label_text)]


class _Section(BaseModel):
    # strict: "1.0" in YAML is a string, and a typo'd key must not be silently ignored.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PrepareParams(_Section):
    raw_data: str = Field(min_length=1)
    target: Annotated[Label, Field(min_length=1)]
    test_size: float = Field(gt=0.0, lt=1.0)
    seed: int = Field(ge=0, le=2**32 - 1)
    # Cells that mean "no value" (besides the empty cell): pandas' long default list would
    # turn a category such as "None" or "NA" (sodium) into a gap without saying so.
    missing_values: list[Label] = Field(default_factory=lambda: ["", "NA"])
    # A categorical column with more distinct values is refused: one-hot encoding it would
    # blow up the model (and is usually an ID column by mistake).
    max_categories: int = Field(default=50, gt=0)
    # Override the inferred kind of a column, e.g. {year: categorical}.
    column_kinds: dict[Label, Literal["numeric", "categorical", "date"]] = Field(default_factory=dict)
    # Columns left out of the model entirely (an ID, a name, free text).
    drop_columns: list[Label] = Field(default_factory=list)
    # The CSV dialect; null: detected (see pipeline.dialect).
    delimiter: Literal[",", ";", "\t", "|"] | None = None
    encoding: str | None = Field(default=None, min_length=1)
    decimal: Literal[".", ","] | None = None
    # Rows without a target are refused (naming the line) unless this drops them.
    drop_missing_target: bool = False


class EstimatorParams(_Section):
    # `class` is a Python keyword: the YAML key is `class`, the attribute `class_`.
    class_: str = Field(alias="class", min_length=1)
    # null (`-S train.estimator.params=null`) means none: the estimator's defaults.
    params: Annotated[dict[str, HyperParam], BeforeValidator(lambda v: {} if v is None else v)] = Field(
        default_factory=dict
    )


class TrainParams(_Section):
    estimator: EstimatorParams
    seed: int = Field(ge=0, le=2**32 - 1)  # random_state, unless estimator.params sets one


class EvaluateParams(_Section):
    # Class that ROC AUC, F1, precision and recall refer to (binary); null: the last class.
    positive_class: Label | None = None


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
        # YAML 1.2, as DVC reads and writes params.yaml (`dvc exp run -S`): `Yes`, `No`, `On`
        # and `Off` are strings there, not the booleans a YAML 1.1 reader (PyYAML) makes them.
        raw = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML: {str(exc).strip().splitlines()[0]}") from None
    return parse_params(raw, source=str(path))
