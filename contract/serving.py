"""`models/serving.json` (stage export): which path the service takes and why.

    {"schema_version": 1, "path": "onnx"|"sklearn", "reason": str,
     "model": {"path": "models/model.joblib", "md5": str},
     "task": "binary"|"multiclass"|"regression",
     "classes": [str, ...] | null,                     # = metadata classes; order of probabilities
     "missing_string": str,                            # = MISSING_STRING: a categorical gap, both paths
     "onnx": {"path": "models/model.onnx", "md5": str, "opset": int,
              "precision": "double"|"float",           # what numeric inputs the graph takes
              "inputs": [{"name": onnx input name, "features": [feature name, ...],
                          "type": "double"|"float"|"string"}],
                  # features here are the model's input columns: a date's parts, not the date
                  # one feature: an [N, 1] tensor; several (numeric only): one [N, k] block with the
                  # columns in that order (the export merges the converter's per-column inputs)
              "outputs": {"label": name|null, "probabilities": name|null, "value": name|null},
              "missing_string": str} | null,           # null on the exact path
     "gate": {"rows": int, "precision": "double"|"float", "measure": "absolute"|"relative",
              "labels_identical": bool|null, "tolerance": float,
              "margin": float, "passed": bool,
              "labels_not_argmax": int|null},  # rows whose predict() is not the most probable class
     "check": {"rows": [{feature: value|null}, ...],   # 8 raw test rows (null = missing value)
               "expected": [...],                      # scikit-learn's probabilities or values
               "labels": [str, ...] | null}}           # scikit-learn's labels (classifiers)

Feeding a model: features in metadata order; a numeric gap is NaN, a categorical gap is
`missing_string` (the pickle takes a pandas DataFrame with object columns for categories; the graph
one tensor per input, numbers as `onnx.precision`, categories as strings).

`check.expected` holds scikit-learn's own output for the check rows (class probabilities in `classes`
order [N, n_classes], or regression values [N]): the service refuses to start unless it reproduces
them within `gate.tolerance`, measured as |got - expected| ("absolute") or
|got - expected| / max(1, |expected|) ("relative", regression), and the labels exactly. The export
took `gate.precision` because that measure's worst value over the whole test split was at most
`tolerance / margin`; the value itself varies with the CPU's onnxruntime kernels, so it is not here
(reports/gate.json has it) and serving.json is the same on every CPU. On the exact path
(`"path": "sklearn"`), `models/model.onnx` is zero bytes and `reason` says why ONNX was not taken (the
exception's class and first line, or the tolerance exceeded).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.errors import ContractError, finite_number, require, versioned_object
from contract.metadata import Metadata
from contract.paths import SERVING_PATHS, SERVING_SCHEMA_VERSION

# How the graph may take a column: numbers as double or float tensors, categories as strings.
# (int64 inputs cannot carry a missing value, and every column here may be null.)
NUMERIC_INPUT_TYPES = frozenset({"double", "float"})
CATEGORICAL_INPUT_TYPES = frozenset({"string"})


@dataclass(frozen=True)
class OnnxInput:
    name: str
    features: tuple[str, ...]  # one: an [n, 1] column; several: an [n, k] block of numeric columns
    type: str  # "double" | "float" | "string"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "features": list(self.features), "type": self.type}


@dataclass(frozen=True)
class OnnxGraph:
    """serving.json's `onnx` section: the graph file, how to feed it and which outputs to read."""

    inputs: tuple[OnnxInput, ...]
    label: str | None
    probabilities: str | None
    value: str | None
    missing_string: str
    opset: int | None
    path: str | None = None
    md5: str | None = None
    precision: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "md5": self.md5,
            "opset": self.opset,
            "precision": self.precision,
            "inputs": [i.to_json() for i in self.inputs],
            "outputs": {"label": self.label, "probabilities": self.probabilities, "value": self.value},
            "missing_string": self.missing_string,
        }

    @classmethod
    def from_json(cls, section: Any, path: Path | str, metadata: Metadata) -> OnnxGraph:
        if not isinstance(section, dict):
            raise ContractError(f"{path}: path is 'onnx' but the onnx section is missing")
        entries = require(section, "inputs", list, path)
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
                allowed = NUMERIC_INPUT_TYPES if feature.numeric else CATEGORICAL_INPUT_TYPES
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
        outputs = require(section, "outputs", dict, path)
        wanted = ("label", "probabilities") if metadata.is_classifier else ("value",)
        for key in wanted:
            if not isinstance(outputs.get(key), str):
                raise ContractError(
                    f"{path}: onnx.outputs.{key} must name a graph output for a {metadata.task} model"
                )
        missing_string = section.get("missing_string")
        if not isinstance(missing_string, str):
            raise ContractError(f"{path}: onnx.missing_string must be a string")
        opset, md5 = section.get("opset"), section.get("md5")
        graph_path, precision = section.get("path"), section.get("precision")
        return cls(
            tuple(inputs),
            outputs.get("label") if metadata.is_classifier else None,
            outputs.get("probabilities") if metadata.is_classifier else None,
            outputs.get("value") if not metadata.is_classifier else None,
            missing_string,
            opset if isinstance(opset, int) else None,
            graph_path if isinstance(graph_path, str) else None,
            md5 if isinstance(md5, str) else None,
            precision if isinstance(precision, str) else None,
        )


@dataclass(frozen=True)
class Gate:
    """How the export measured the graph against scikit-learn, and the tolerance the service keeps."""

    tolerance: float
    measure: str  # "absolute" | "relative": |got - expected| / max(1, |expected|)
    rows: int | None = None
    precision: str | None = None
    labels_identical: bool | None = None
    margin: float | None = None
    passed: bool | None = None
    labels_not_argmax: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "precision": self.precision,
            "measure": self.measure,
            "labels_identical": self.labels_identical,
            "tolerance": self.tolerance,
            "margin": self.margin,
            "passed": self.passed,
            "labels_not_argmax": self.labels_not_argmax,
        }


@dataclass(frozen=True)
class Check:
    """Raw test rows and scikit-learn's own answers for them: what the service must reproduce."""

    rows: list[dict[str, Any]]
    expected: list[Any]
    labels: list[str] | None

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "expected": self.expected, "labels": self.labels}


@dataclass(frozen=True)
class ServingPlan:
    """models/serving.json: which path serves the model, why, and what it must reproduce."""

    path: str  # "onnx" | "sklearn"
    reason: str
    model_path: str | None
    model_md5: str | None  # the pickle this plan was written for
    task: str
    classes: tuple[str, ...] | None
    missing_string: str  # what a categorical gap becomes before it reaches the model (both paths)
    onnx: OnnxGraph | None
    gate: Gate
    check: Check

    @property
    def tolerance(self) -> float:
        return float(self.gate.tolerance)

    @property
    def relative(self) -> bool:
        return self.gate.measure == "relative"

    @property
    def check_rows(self) -> list[dict[str, Any]]:
        return self.check.rows

    @property
    def check_expected(self) -> list[Any]:
        return self.check.expected

    @property
    def check_labels(self) -> list[str] | None:
        """scikit-learn's labels for the check rows (classifiers)."""
        return self.check.labels

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SERVING_SCHEMA_VERSION,
            "path": self.path,
            "reason": self.reason,
            "model": {"path": self.model_path, "md5": self.model_md5},
            "task": self.task,
            "classes": list(self.classes) if self.classes is not None else None,
            "missing_string": self.missing_string,
            "onnx": self.onnx.to_json() if self.onnx is not None else None,
            "gate": self.gate.to_json(),
            "check": self.check.to_json(),
        }

    @classmethod
    def from_json(cls, doc: Any, path: Path | str, metadata: Metadata) -> ServingPlan:
        """models/serving.json (schema 1), checked against the metadata's features and task."""
        doc = versioned_object(doc, path, SERVING_SCHEMA_VERSION)
        serving_path = path_of(doc, path)
        # serving.json repeats the task and the classes (the order of the probabilities): they must agree.
        if doc.get("task", metadata.task) != metadata.task:
            raise ContractError(
                f"{path}: task {doc.get('task')!r} differs from the metadata's {metadata.task!r}"
            )
        classes = doc.get("classes")
        if classes is not None and not isinstance(classes, list):
            raise ContractError(f"{path}: classes must be a list or null")
        if (
            metadata.is_classifier
            and classes is not None
            and [str(c) for c in classes] != list(metadata.classes)
        ):
            raise ContractError(
                f"{path}: classes {classes} differ from the metadata's {list(metadata.classes)}"
            )
        onnx = OnnxGraph.from_json(doc.get("onnx"), path, metadata) if serving_path == "onnx" else None
        gate = _gate(require(doc, "gate", dict, path), path)
        missing_string = doc.get("missing_string")
        if not isinstance(missing_string, str):
            raise ContractError(f"{path}: missing_string must be a string")
        check = _check(require(doc, "check", dict, path), path, metadata)
        model = require(doc, "model", dict, path)
        return cls(
            path=serving_path,
            reason=str(doc.get("reason", "")),
            model_path=model.get("path") if isinstance(model.get("path"), str) else None,
            model_md5=model.get("md5") if isinstance(model.get("md5"), str) else None,
            task=metadata.task,
            classes=tuple(str(c) for c in classes) if classes is not None else None,
            missing_string=missing_string,
            onnx=onnx,
            gate=gate,
            check=check,
        )


def path_of(doc: dict[str, Any], path: Path | str) -> str:
    """serving.json's `path`: "onnx" or "sklearn" (what the image tooling reads alone)."""
    serving_path = doc.get("path")
    if serving_path not in SERVING_PATHS:
        raise ContractError(f"{path}: path {serving_path!r} is not one of {SERVING_PATHS}")
    return str(serving_path)


def _gate(gate: dict[str, Any], path: Path | str) -> Gate:
    tolerance = gate.get("tolerance")
    if not finite_number(tolerance) or tolerance < 0:
        raise ContractError(f"{path}: gate.tolerance must be a non-negative number")
    measure = gate.get("measure", "absolute")
    if measure not in ("absolute", "relative"):
        raise ContractError(f"{path}: gate.measure {measure!r} is not 'absolute' or 'relative'")
    return Gate(
        tolerance=tolerance,
        measure=measure,
        rows=gate.get("rows"),
        precision=gate.get("precision"),
        labels_identical=gate.get("labels_identical"),
        margin=gate.get("margin"),
        passed=gate.get("passed"),
        labels_not_argmax=gate.get("labels_not_argmax"),
    )


def _check(check: dict[str, Any], path: Path | str, metadata: Metadata) -> Check:
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
            isinstance(value, list) and len(value) == width and all(map(finite_number, value))
            if metadata.is_classifier
            else finite_number(value)
        )
        if not ok:
            shape = f"a list of {width} probabilities" if metadata.is_classifier else "a number"
            raise ContractError(f"{path}: check.expected[{i}] is not {shape}")
    return Check(
        rows, expected, [str(label) for label in labels] if metadata.is_classifier and labels else None
    )
