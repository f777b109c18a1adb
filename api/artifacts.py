"""Reads the pipeline's artifacts for serving: md5-checked against dvc.lock, then parsed.

The file formats are documented (and named) in `contract`; this module is the service's reading of
them: what it needs from `models/metadata.json` (features, task, classes) and from
`models/serving.json` (which path, the ONNX graph's inputs and outputs, the check rows). Anything
malformed raises `ContractError` with one line naming the file and the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

import contract
from api.settings import Settings
from contract import ContractError
from contract.dates import model_order, part_names

# How the ONNX graph may take a column: numbers as double or float tensors, categories as strings.
# (int64 inputs cannot carry a missing value, and every column here may be null.)
_NUMERIC_INPUT_TYPES = frozenset({"double", "float"})
_CATEGORICAL_INPUT_TYPES = frozenset({"string"})


@dataclass(frozen=True)
class Feature:
    """One input column as the model was trained on it."""

    name: str
    kind: str  # "numeric" | "categorical" | "date" (ISO 8601 text; the model takes its parts)
    categories: tuple[str, ...] | None  # levels seen in training (categorical only)
    missing: bool  # whether the training data had gaps in it

    @property
    def numeric(self) -> bool:
        return self.kind == "numeric"


@dataclass(frozen=True)
class Metadata:
    """The parts of models/metadata.json the service validates and answers with."""

    document: dict[str, Any]
    features: tuple[Feature, ...]
    task: str  # "binary" | "multiclass" | "regression"
    classes: tuple[str, ...]  # empty for regression
    example: dict[str, Any]

    @property
    def is_classifier(self) -> bool:
        return self.task != "regression"

    @property
    def model_features(self) -> tuple[Feature, ...]:
        """The model's input columns (contract.dates.model_order): the features that are not dates,
        then each date's parts as numeric columns. Requests name `features`; runners feed these."""
        by_name = {f.name: f for f in self.features}
        missing = {part: f.missing for f in self.features if f.kind == "date" for part in part_names(f.name)}
        return tuple(
            by_name.get(name) or Feature(name, "numeric", None, missing[name])
            for name, _ in model_order((f.name, f.kind) for f in self.features)
        )


@dataclass(frozen=True)
class OnnxInput:
    name: str
    features: tuple[str, ...]  # one: an [n, 1] column; several: an [n, k] block of numeric columns
    type: str


@dataclass(frozen=True)
class OnnxGraph:
    """serving.json's `onnx` section: how to feed the graph and which outputs to read."""

    inputs: tuple[OnnxInput, ...]
    label: str | None
    probabilities: str | None
    value: str | None
    missing_string: str
    opset: int | None


@dataclass(frozen=True)
class ServingPlan:
    """models/serving.json: which path serves the model, why, and what it must reproduce."""

    document: dict[str, Any]
    path: str  # "onnx" | "sklearn"
    reason: str
    onnx: OnnxGraph | None
    missing_string: str  # what a categorical gap becomes before it reaches the model (both paths)
    tolerance: float
    relative: bool  # gate measure: |got - expected| / max(1, |expected|) instead of |got - expected|
    check_rows: list[dict[str, Any]]
    check_expected: list[Any]
    check_labels: list[str] | None  # scikit-learn's labels for the check rows (classifiers)


@dataclass(frozen=True)
class VerifiedArtifacts:
    """Bytes whose md5 matched dvc.lock, and the parsed documents that describe them."""

    metadata: Metadata
    serving: ServingPlan
    model_bytes: bytes  # the pickle: unpickled only on the exact path
    onnx_bytes: bytes  # empty on the exact path
    md5s: dict[str, str]  # artifact -> md5 (model, onnx, serving, metadata)


def _load_json(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ContractError(f"{path} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ContractError(f"{path} is not a JSON object")
    return doc


def _require(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ContractError(f"{path}: {key} is missing or not {_describe_type(kind)}")
    return value


def _describe_type(kind: type | tuple[type, ...]) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _parse_feature(entry: Any, index: int, path: Path) -> Feature:
    where = f"{path}: features[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise ContractError(f"{where} has no name")
    kind = entry.get("kind")
    if kind not in contract.FEATURE_KINDS:
        raise ContractError(
            f"{where} ({entry['name']}): kind {kind!r} is not one of {contract.FEATURE_KINDS}"
        )
    categories = entry.get("categories")
    if kind == "categorical":
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            raise ContractError(f"{where} ({entry['name']}): categories must be a list of strings")
        categories = tuple(categories)
    else:
        categories = None
    return Feature(entry["name"], kind, categories, bool(entry.get("missing", False)))


def parse_metadata(raw: bytes, path: Path) -> Metadata:
    """models/metadata.json (schema 2), refusing what the service could not validate against."""
    doc = _load_json(raw, path)
    if doc.get("schema_version") != contract.METADATA_SCHEMA_VERSION:
        raise ContractError(
            f"{path}: schema_version {doc.get('schema_version')!r} is not "
            f"{contract.METADATA_SCHEMA_VERSION}: run `dvc repro`"
        )
    task = doc.get("task")
    if task not in contract.TASKS:
        raise ContractError(f"{path}: task {task!r} is not one of {contract.TASKS}")
    entries = _require(doc, "features", list, path)
    features = tuple(_parse_feature(entry, i, path) for i, entry in enumerate(entries))
    names = [f.name for f in features]
    if not names or len(set(names)) != len(names):
        raise ContractError(f"{path}: feature names are empty or not unique")
    parts = {part for f in features if f.kind == "date" for part in part_names(f.name)}
    if parts & set(names):
        raise ContractError(f"{path}: feature {sorted(parts & set(names))[0]!r} is also a date's part")
    classes: tuple[str, ...] = ()
    if task == "regression":
        if doc.get("classes") is not None:
            raise ContractError(f"{path}: classes must be null for a regression model")
    else:
        raw_classes = _require(doc, "classes", list, path)
        classes = tuple(str(c) for c in raw_classes)
        wanted = "exactly 2" if task == "binary" else "at least 3"
        if len(classes) != 2 if task == "binary" else len(classes) < 3:
            raise ContractError(f"{path}: a {task} model needs {wanted} classes, got {len(classes)}")
        if len(set(classes)) != len(classes):
            raise ContractError(f"{path}: classes are not unique")
    example = _require(doc, "example", dict, path)
    if set(example) != set(names):
        raise ContractError(f"{path}: example does not have exactly the model's features")
    return Metadata(doc, features, task, classes, example)


def _parse_onnx(section: Any, path: Path, metadata: Metadata) -> OnnxGraph:
    if not isinstance(section, dict):
        raise ContractError(f"{path}: path is 'onnx' but the onnx section is missing")
    entries = _require(section, "inputs", list, path)
    by_feature = {f.name: f for f in metadata.model_features}
    inputs = []
    for i, entry in enumerate(entries):
        names = entry.get("features") if isinstance(entry, dict) else None
        if (
            not isinstance(entry.get("name") if isinstance(entry, dict) else None, str)
            or not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) for n in names)
        ):
            raise ContractError(f"{path}: onnx.inputs[{i}] needs a name and a non-empty list of features")
        features = [by_feature.get(n) for n in names]
        unknown = [n for n, f in zip(names, features, strict=True) if f is None]
        if unknown:
            raise ContractError(f"{path}: onnx.inputs[{i}] feeds {unknown[0]!r}, not a model feature")
        input_type = entry.get("type")
        for feature in features:
            assert feature is not None
            allowed = _NUMERIC_INPUT_TYPES if feature.numeric else _CATEGORICAL_INPUT_TYPES
            if not isinstance(input_type, str) or input_type not in allowed:
                raise ContractError(
                    f"{path}: onnx.inputs[{i}] ({feature.name}, {feature.kind}) has type "
                    f"{entry.get('type')!r}; the service feeds {sorted(allowed)}"
                )
        if len(names) > 1 and entry["type"] == "string":
            raise ContractError(f"{path}: onnx.inputs[{i}]: categorical columns are fed one per input")
        inputs.append(OnnxInput(entry["name"], tuple(names), entry["type"]))
    fed = sorted(n for i in inputs for n in i.features)
    if fed != sorted(by_feature):
        raise ContractError(f"{path}: onnx.inputs must feed every feature exactly once")
    outputs = _require(section, "outputs", dict, path)
    wanted = ("label", "probabilities") if metadata.is_classifier else ("value",)
    for key in wanted:
        if not isinstance(outputs.get(key), str):
            raise ContractError(
                f"{path}: onnx.outputs.{key} must name a graph output for a {metadata.task} model"
            )
    missing_string = section.get("missing_string")
    if not isinstance(missing_string, str):
        raise ContractError(f"{path}: onnx.missing_string must be a string")
    opset = section.get("opset")
    return OnnxGraph(
        tuple(inputs),
        outputs.get("label") if metadata.is_classifier else None,
        outputs.get("probabilities") if metadata.is_classifier else None,
        outputs.get("value") if not metadata.is_classifier else None,
        missing_string,
        opset if isinstance(opset, int) else None,
    )


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_serving(raw: bytes, path: Path, metadata: Metadata) -> ServingPlan:
    """models/serving.json (schema 1), checked against the metadata's features and task."""
    doc = _load_json(raw, path)
    if doc.get("schema_version") != contract.SERVING_SCHEMA_VERSION:
        raise ContractError(f"{path}: schema_version {doc.get('schema_version')!r} is not 1")
    serving_path = doc.get("path")
    if serving_path not in contract.SERVING_PATHS:
        raise ContractError(f"{path}: path {serving_path!r} is not one of {contract.SERVING_PATHS}")
    # serving.json repeats the task and the classes (the order of the probabilities): they must agree.
    if doc.get("task", metadata.task) != metadata.task:
        raise ContractError(f"{path}: task {doc.get('task')!r} differs from the metadata's {metadata.task!r}")
    classes = doc.get("classes")
    if classes is not None and not isinstance(classes, list):
        raise ContractError(f"{path}: classes must be a list or null")
    if metadata.is_classifier and classes is not None and [str(c) for c in classes] != list(metadata.classes):
        raise ContractError(f"{path}: classes {classes} differ from the metadata's {list(metadata.classes)}")
    onnx = _parse_onnx(doc.get("onnx"), path, metadata) if serving_path == "onnx" else None
    gate = _require(doc, "gate", dict, path)
    tolerance = gate.get("tolerance")
    if not _finite_number(tolerance) or tolerance < 0:
        raise ContractError(f"{path}: gate.tolerance must be a non-negative number")
    measure = gate.get("measure", "absolute")
    if measure not in ("absolute", "relative"):
        raise ContractError(f"{path}: gate.measure {measure!r} is not 'absolute' or 'relative'")
    missing_string = doc.get("missing_string")
    if not isinstance(missing_string, str):
        raise ContractError(f"{path}: missing_string must be a string")
    check = _require(doc, "check", dict, path)
    rows, expected = check.get("rows"), check.get("expected")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise ContractError(f"{path}: check.rows must be a non-empty list of objects")
    if not isinstance(expected, list) or len(expected) != len(rows):
        raise ContractError(f"{path}: check.expected must have one entry per check row")
    labels = check.get("labels")
    if (
        metadata.is_classifier
        and labels is not None
        and (
            not isinstance(labels, list)
            or len(labels) != len(rows)
            or not all(isinstance(label, str) and label in metadata.classes for label in labels)
        )
    ):
        raise ContractError(f"{path}: check.labels must name one of the classes per check row")
    width = len(metadata.classes)
    for i, value in enumerate(expected):
        ok = (
            isinstance(value, list) and len(value) == width and all(map(_finite_number, value))
            if metadata.is_classifier
            else _finite_number(value)
        )
        if not ok:
            shape = f"a list of {width} probabilities" if metadata.is_classifier else "a number"
            raise ContractError(f"{path}: check.expected[{i}] is not {shape}")
    return ServingPlan(
        document=doc,
        path=serving_path,
        reason=str(doc.get("reason", "")),
        onnx=onnx,
        missing_string=missing_string,
        tolerance=float(tolerance),
        relative=measure == "relative",
        check_rows=rows,
        check_expected=expected,
        check_labels=[str(label) for label in labels] if metadata.is_classifier and labels else None,
    )


def verify_artifacts(settings: Settings) -> VerifiedArtifacts:
    """Check every artifact's md5 against dvc.lock before parsing or using any of it."""
    lock_path = settings.dvc_lock_path
    lock = contract.load_dvc_lock(lock_path)

    def verified(path: Path, what: str) -> tuple[bytes, str]:
        return contract.verified_bytes(path, lock, lock_path, what)

    meta_raw, meta_md5 = verified(settings.metadata_path, "metadata")
    serving_raw, serving_md5 = verified(settings.serving_path, "serving plan")
    metadata = parse_metadata(meta_raw, settings.metadata_path)
    serving = parse_serving(serving_raw, settings.serving_path, metadata)
    # The pickle is the model of record (its md5 is the served version), but on the ONNX path it is
    # never loaded, and the image does not ship it: its md5 comes from dvc.lock alone.
    model_raw = b""
    if serving.path == "sklearn":  # unpickled: models/model.sha256's sha256 as well as the md5
        model_raw, model_md5 = contract.verified_pickle_bytes(settings.model_path, lock, lock_path, "model")
    else:
        model_md5 = contract.locked_md5(lock, lock_path, settings.model_path)
    recorded = _require(serving.document, "model", dict, settings.serving_path)
    if recorded.get("md5") != model_md5:
        raise ContractError(
            f"{settings.serving_path} was written for a model with md5 {recorded.get('md5')}, "
            f"not for {settings.model_path} ({model_md5}): run `dvc repro`"
        )
    md5s = {"model": model_md5, "serving": serving_md5, "metadata": meta_md5}
    onnx_raw = b""
    if serving.path == "onnx":
        onnx_raw, md5s["onnx"] = verified(settings.onnx_path, "ONNX model")
        if serving.document["onnx"].get("md5") != md5s["onnx"]:
            raise ContractError(
                f"{settings.serving_path} describes an ONNX graph with md5 "
                f"{serving.document['onnx'].get('md5')}, not {settings.onnx_path} ({md5s['onnx']})"
            )
    return VerifiedArtifacts(metadata, serving, model_raw, onnx_raw, md5s)
