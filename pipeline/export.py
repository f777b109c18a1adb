"""Stage `export`: the fitted pipeline as ONNX (skl2onnx), checked against scikit-learn.

The faithfulness gate runs the graph with onnxruntime on the whole test split: labels must be
identical to scikit-learn's and probabilities (or regression values) within the family's
tolerance. Double precision is tried first; when the converter or onnxruntime cannot take the
model in double (some tree ensembles), float32. When neither converts or passes, the model takes
the exact path: `models/model.onnx` is written empty and the service runs the md5-checked pickle.
`models/serving.json` says which path, and why (format in `contract`).

onnxruntime picks its kernels by CPU, so the measured differences vary (in the last digits) from
one machine to the next. serving.json must not: it goes into the image. So it records the decision
and the rule, never the measurement, and the rule has a margin (MARGIN): a precision is taken when
its worst difference is at most tolerance / MARGIN, refused above the tolerance, and in between the
stage stops (exit 2) instead of taking a path another CPU could decide otherwise. The measured
values go to `reports/gate.json`, which DVC does not track (its md5 would reach dvc.lock).
"""

from __future__ import annotations

import copy
import re
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the dev lock
from sklearn.pipeline import Pipeline

from contract import (
    MISSING_STRING,
    MODEL_FILE,
    ONNX_FILE,
    SCHEMA_FILE,
    SERVING_FILE,
    TEST_CSV,
    load_verified_pickle,
    md5_hex,
)
from contract.schema import Schema
from contract.serving import Check, Gate, OnnxGraph, OnnxInput, ServingPlan
from pipeline.data import atomic_write, read_table, write_json
from pipeline.errors import PipelineError
from pipeline.features import model_input
from pipeline.schema import read_schema

OPSET = 18  # default ONNX domain; fixed, so the graph does not change with the converter's default
ML_OPSET = 3  # ai.onnx.ml
CHECK_ROWS = 8
PRECISIONS = ("double", "float")
# Gate tolerance per family and precision, on |onnx - sklearn| for probabilities and on
# |onnx - sklearn| / max(1, |sklearn|) for regression values. Linear models in double are exact
# to rounding (measured 2e-16). Every other family gets 1e-6 in double: tree ensembles keep
# their thresholds and leaf values in float32 in ai.onnx.ml (measured 5e-8), SVC's Platt
# scaling differs by about 2e-7. In float32, 1e-5 (measured up to 9e-6, SVC).
LINEAR_MODULES = ("sklearn.linear_model",)
SAFE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TOLERANCES = {"linear": {"double": 1e-12, "float": 1e-5}, "other": {"double": 1e-6, "float": 1e-5}}
# A precision passes at worst <= tolerance / MARGIN. Another CPU's kernels move the worst
# difference by a few units in the last place, far less than this factor, so no model near the
# line can pass on one CPU and fail on another: between the two it stops with an error instead.
MARGIN = 2.0
GATE_REPORT = Path("reports/gate.json")  # measured values: not a DVC output (they vary by CPU)


@dataclass(frozen=True)
class Reference:
    """scikit-learn's own outputs on the test split: what the graph must reproduce."""

    labels: list[str] | None  # classifiers
    outputs: npt.NDArray[np.float64]  # probabilities [n, n_classes] or values [n]


@dataclass(frozen=True)
class Attempt:
    precision: str
    onnx: bytes | None
    inputs: list[OnnxInput] | None  # serving.json's onnx.inputs for this graph
    worst: float | None
    labels_identical: bool | None
    error: str | None  # why this precision was not taken

    @property
    def passed(self) -> bool:
        return self.error is None


def family(model: Pipeline) -> str:
    return "linear" if type(model.steps[-1][1]).__module__.startswith(LINEAR_MODULES) else "other"


def reference_outputs(model: Pipeline, X: pd.DataFrame, schema: Schema) -> Reference:
    if schema.task == "regression":
        return Reference(labels=None, outputs=np.asarray(model.predict(X), dtype=np.float64))
    return Reference(
        labels=[str(v) for v in model.predict(X)],
        outputs=np.asarray(model.predict_proba(X), dtype=np.float64),
    )


def onnx_feed(X: pd.DataFrame, inputs: list[OnnxInput]) -> dict[str, npt.NDArray[Any]]:
    """The graph's feed for X, as `inputs` (serving.json's onnx.inputs) describes it: numbers in the
    input's precision, [n, k] for a block of numeric columns; categories as [n, 1] strings."""
    feed: dict[str, npt.NDArray[Any]] = {}
    for spec in inputs:
        if spec.type == "string":
            [column] = spec.features
            feed[spec.name] = np.asarray(X[column].tolist(), dtype=object).reshape(-1, 1)
        else:
            dtype = np.float64 if spec.type == "double" else np.float32
            feed[spec.name] = X[list(spec.features)].to_numpy(dtype=dtype).reshape(len(X), -1)
    return feed


def merge_column_inputs(graph: Any) -> dict[str, list[str]]:
    """Replace each Concat that only joins [n, 1] graph inputs of one type by a single [n, k] input.

    The converter takes one input per column and concatenates the numeric ones first thing. Fed
    one at a time, thirty columns cost onnxruntime about 20 µs a call more than one [n, 30]
    block (measured on the breast-cancer model: 27 µs against 8 µs a row), which is most of a
    single-row request. The Concat's output name becomes the input's name, so no other node
    changes. Returns {new input: the column inputs it replaces, in order}.
    """
    from onnx import helper

    inputs = {tensor.name: tensor for tensor in graph.input}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    outputs = {tensor.name for tensor in graph.output}
    merged: dict[str, list[str]] = {}
    for node in list(graph.node):
        columns = list(node.input)
        if node.op_type != "Concat" or len(columns) < 2 or node.output[0] in outputs:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), None)
        if axis not in (1, -1) or not all(c in inputs and uses[c] == 1 for c in columns):
            continue
        types = {inputs[c].type.tensor_type.elem_type for c in columns}
        widths = {tuple(d.dim_value for d in inputs[c].type.tensor_type.shape.dim[1:]) for c in columns}
        if len(types) != 1 or widths != {(1,)}:
            continue
        graph.node.remove(node)
        for column in columns:
            graph.input.remove(inputs[column])
        graph.input.append(helper.make_tensor_value_info(node.output[0], types.pop(), [None, len(columns)]))
        merged[node.output[0]] = columns
    return merged


def graph_names(schema: Schema) -> dict[str, str]:
    """{graph input name: model column (a feature, or a date's part)}: a column's own name when it is
    an identifier, else a sanitised one (skl2onnx rewrites names with spaces, `/`, a leading digit,
    ...; only ASCII letters, digits and `_` survive it). Only the graph sees these: serving.json maps
    each graph input to its features, so the API and its clients keep the CSV's header names."""
    taken: dict[str, str] = {}
    for index, name in enumerate(c.name for c in schema.model_features):
        safe = name if SAFE_NAME.fullmatch(name) else f"f{index}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"
        while safe in taken:
            safe = f"{safe}_"
        taken[safe] = name
    return taken


def onnx_inputs(graph: Any, merged: dict[str, list[str]], schema: Schema) -> list[OnnxInput]:
    """serving.json's `onnx.inputs`: each graph input, its type, and the features it takes in
    order (one for an [n, 1] column, several for an [n, k] block of numeric columns)."""
    from onnx import TensorProto

    names = {TensorProto.DOUBLE: "double", TensorProto.FLOAT: "float", TensorProto.STRING: "string"}
    known = {c.name for c in schema.model_features}
    feature_of = graph_names(schema)
    inputs = []
    for tensor in graph.input:
        features = [str(feature_of.get(n, n)) for n in merged.get(tensor.name, [tensor.name])]
        if not set(features) <= known:
            raise PipelineError(f"{ONNX_FILE}: graph input {tensor.name!r} feeds no feature of the schema")
        inputs.append(OnnxInput(tensor.name, tuple(features), names[tensor.type.tensor_type.elem_type]))
    return inputs


def rename_columns(model: Pipeline, graph_name: dict[str, str]) -> Pipeline:
    """A copy of the fitted pipeline whose ColumnTransformer selects the graph's input names (the
    converter matches its column lists against the initial types' names). The copy only feeds the
    converter; the pickle, which the gate compares against, keeps the CSV's names."""
    if all(k == v for k, v in graph_name.items()):
        return model
    renamed = copy.deepcopy(model)
    preprocess = renamed.steps[0][1]
    preprocess.transformers_ = [
        (label, step, [graph_name.get(c, c) for c in columns] if isinstance(columns, list) else columns)
        for label, step, columns in preprocess.transformers_
    ]
    preprocess.feature_names_in_ = np.asarray(
        [graph_name[str(c)] for c in preprocess.feature_names_in_], dtype=object
    )
    return renamed


def convert(model: Pipeline, schema: Schema, precision: str) -> tuple[bytes, list[OnnxInput]]:
    """skl2onnx conversion with byte-stable output: fixed target opsets, graph name and doc
    strings (the converter otherwise names the graph with a random uuid), and the opset imports
    sorted by domain (the converter lists them in set order, which follows the hash seed).
    Per-column numeric inputs are merged into blocks (merge_column_inputs). Returns the graph's
    bytes and its inputs as serving.json describes them."""
    from skl2onnx import convert_sklearn  # type: ignore[import-untyped]
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType  # type: ignore[import-untyped]

    from pipeline.converters import register_fixes, register_other_libraries

    register_fixes()
    register_other_libraries()
    number = DoubleTensorType if precision == "double" else FloatTensorType
    graph_name = {feature: name for name, feature in graph_names(schema).items()}
    inputs = [
        (graph_name[c.name], number([None, 1]) if c.kind == "numeric" else StringTensorType([None, 1]))
        for c in schema.model_features
    ]
    model = rename_columns(model, graph_name)
    estimator = model.steps[-1][1]
    options = {id(estimator): {"zipmap": False}} if schema.task == "classification" else None
    onx = convert_sklearn(
        model,
        name="lockstep",
        initial_types=inputs,
        options=options,
        target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
    )
    onx.doc_string = ""
    onx.graph.doc_string = ""
    merged = merge_column_inputs(onx.graph)
    imports = sorted((o.domain, o.version) for o in onx.opset_import)
    del onx.opset_import[:]
    for domain, opset_version in imports:
        onx.opset_import.add(domain=domain, version=opset_version)
    return bytes(onx.SerializeToString()), onnx_inputs(onx.graph, merged, schema)


def run_onnx(data: bytes, feed: dict[str, npt.NDArray[Any]]) -> list[Any]:
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the measured difference must not depend on the host
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return list(session.run(None, feed))


def measure(outputs: list[Any], ref: Reference) -> tuple[float, bool | None]:
    """Worst difference (absolute for probabilities, relative to max(1, |y|) for values) and
    whether the labels are identical."""
    if ref.labels is None:
        got = np.asarray(outputs[0], dtype=np.float64).reshape(-1)
        diff = np.abs(got - ref.outputs) / np.maximum(1.0, np.abs(ref.outputs))
        return float(diff.max()), None
    labels = [str(v) for v in np.asarray(outputs[0]).reshape(-1).tolist()]
    proba = np.asarray(outputs[1], dtype=np.float64)
    if proba.shape != ref.outputs.shape:
        return float("inf"), labels == ref.labels
    return float(np.abs(proba - ref.outputs).max()), labels == ref.labels


def graph_facts(data: bytes) -> tuple[list[str], int]:
    """The graph's output names and the default-domain opset it imports (at most OPSET: the
    converter asks for no more than its operators need)."""
    import onnx

    model = onnx.load_model_from_string(data)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return [o.name for o in model.graph.output], int(opset)


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {lines[0] if lines else ''}"[:300]


def attempt(model: Pipeline, schema: Schema, X: pd.DataFrame, ref: Reference, precision: str) -> Attempt:
    """Convert and gate in one precision. The error strings carry no measured number: they go
    into serving.json's reason, which must be the same on every CPU."""
    tolerance = TOLERANCES[family(model)][precision]
    try:
        data, inputs = convert(model, schema, precision)
    except Exception as exc:
        return Attempt(precision, None, None, None, None, f"conversion failed: {first_line(exc)}")
    try:
        outputs = run_onnx(data, onnx_feed(X, inputs))
    except Exception as exc:
        error = f"onnxruntime cannot run the graph: {first_line(exc)}"
        return Attempt(precision, data, inputs, None, None, error)
    worst, same_labels = measure(outputs, ref)
    if same_labels is False:
        return Attempt(
            precision, data, inputs, worst, False, "gate failed: labels differ from scikit-learn's"
        )
    if not worst <= tolerance:
        error = f"gate failed: worst difference above the tolerance {tolerance:g}"
        return Attempt(precision, data, inputs, worst, same_labels, error)
    return Attempt(precision, data, inputs, worst, same_labels, None)


def check_margin(model: Pipeline, taken: Attempt) -> None:
    """A passed attempt must pass by the margin: between tolerance / MARGIN and the tolerance,
    another CPU could decide the path otherwise, so none is taken."""
    tolerance = TOLERANCES[family(model)][taken.precision]
    if taken.passed and taken.worst is not None and taken.worst > tolerance / MARGIN:
        raise PipelineError(
            f"export: the {taken.precision} gate's worst difference {taken.worst:.3g} lies between "
            f"tolerance/{MARGIN:g} ({tolerance / MARGIN:g}) and the tolerance ({tolerance:g}), where "
            f"another CPU could take another path; nothing was written (measurements in {GATE_REPORT})"
        )


def with_probes(X_raw: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The test split plus probe rows the split may lack: its first row with each feature in turn
    missing, and with each categorical feature set to a level training never saw. The gate then
    proves the graph and the pickle agree on gaps and unknown levels too."""
    first = X_raw.iloc[[0]]
    probes = []
    for column in schema.features:
        gap = first.copy()
        gap[column.name] = pd.Series(
            [np.nan if column.kind == "numeric" else None], dtype=gap[column.name].dtype
        )
        probes.append(gap)
        if column.kind == "categorical":
            unseen = first.copy()
            unseen[column.name] = pd.Series(["<a level training never saw>"], dtype=object)
            probes.append(unseen)
    return pd.concat([X_raw, *probes], ignore_index=True)


def check_rows(X_raw: pd.DataFrame) -> list[int]:
    """CHECK_ROWS test rows: up to half of them with a gap (so the service's start-up check
    exercises the missing-value path when the data has one), the rest from the top."""
    gaps = [i for i, has in enumerate(X_raw.isna().any(axis=1).tolist()) if has][: CHECK_ROWS // 2]
    rest = [i for i in range(len(X_raw)) if i not in gaps][: CHECK_ROWS - len(gaps)]
    return sorted(gaps + rest)


def labels_not_argmax(model: Pipeline, ref: Reference) -> int | None:
    """Gate rows whose label (scikit-learn's predict, which both paths serve) is not the class of
    highest probability: SVC's Platt-scaled probabilities can disagree with its decision function."""
    if ref.labels is None:
        return None
    most_probable = [str(model.classes_[i]) for i in np.argmax(ref.outputs, axis=1).tolist()]
    return sum(a != b for a, b in zip(ref.labels, most_probable, strict=True))


def _json_cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value


def serving_document(
    model: Pipeline,
    schema: Schema,
    X_raw: pd.DataFrame,
    X: pd.DataFrame,
    ref: Reference,
    attempts: list[Attempt],
    model_md5: str,
) -> tuple[dict[str, Any], bytes]:
    """serving.json's content and the bytes of model.onnx (empty on the exact path)."""
    chosen = next((a for a in attempts if a.passed), None)
    last = chosen or attempts[-1]
    tolerance = TOLERANCES[family(model)][last.precision]
    converter = f"skl2onnx {version('skl2onnx')}"
    tried = "; ".join(f"{a.precision}: {a.error}" for a in attempts if not a.passed)
    if chosen is not None:
        reason = (
            f"converted by {converter} in {chosen.precision} precision; gate passed on {len(ref.outputs)} "
            f"rows (test split and probes): worst difference <= {tolerance / MARGIN:g} (tolerance "
            f"{tolerance:g} / margin {MARGIN:g})"
        ) + (f" (not {tried})" if tried else "")
    else:
        reason = f"exact path: scikit-learn runs the pickle because ONNX failed ({tried})"
    onnx_bytes = chosen.onnx if chosen is not None and chosen.onnx is not None else b""
    classifier = schema.task == "classification"
    graph = None
    if chosen is not None:
        names, opset = graph_facts(onnx_bytes)
        graph = OnnxGraph(
            inputs=tuple(chosen.inputs or ()),
            label=names[0] if classifier else None,
            probabilities=names[1] if classifier else None,
            value=None if classifier else names[0],
            missing_string=MISSING_STRING,
            opset=opset,
            path=ONNX_FILE.as_posix(),
            md5=md5_hex(onnx_bytes),
            precision=chosen.precision,
        )
    index = check_rows(X_raw)
    rows = X_raw.iloc[index]
    plan = ServingPlan(
        path="onnx" if chosen is not None else "sklearn",
        reason=reason,
        model_path=MODEL_FILE.as_posix(),
        model_md5=model_md5,
        task="regression" if not classifier else ("binary" if len(model.classes_) == 2 else "multiclass"),
        classes=tuple(str(c) for c in model.classes_) if classifier else None,
        missing_string=MISSING_STRING,
        onnx=graph,
        gate=Gate(
            rows=len(ref.outputs),
            precision=last.precision,
            measure="absolute" if classifier else "relative",
            labels_identical=last.labels_identical,
            tolerance=tolerance,
            margin=MARGIN,
            passed=chosen is not None,
            labels_not_argmax=labels_not_argmax(model, ref),
        ),
        check=Check(
            rows=[{name: _json_cell(rows.iloc[i][name]) for name in schema.names} for i in range(len(rows))],
            expected=ref.outputs[index].tolist(),
            labels=[ref.labels[i] for i in index] if ref.labels is not None else None,
        ),
    )
    doc = plan.to_json()
    return doc, onnx_bytes


def gate_report(model: Pipeline, attempts: list[Attempt]) -> dict[str, Any]:
    """reports/gate.json: what this machine's onnxruntime measured, for people, not for the image."""
    import onnxruntime as ort

    fields = ("precision", "worst", "labels_identical", "error")
    return {
        "onnxruntime": ort.__version__,
        "margin": MARGIN,
        "attempts": [
            {
                **{k: v for k, v in asdict(a).items() if k in fields},
                "worst": a.worst if a.worst is None or np.isfinite(a.worst) else None,  # inf: no JSON
                "tolerance": TOLERANCES[family(model)][a.precision],
            }
            for a in attempts
        ],
    }


def main() -> None:
    schema = read_schema(SCHEMA_FILE)
    test = read_table(TEST_CSV, schema)
    model, model_md5 = load_verified_pickle(MODEL_FILE)  # its md5 must be dvc.lock's first
    X = model_input(with_probes(test.X, schema), schema)
    ref = reference_outputs(model, X, schema)
    attempts: list[Attempt] = []
    try:
        for precision in PRECISIONS:
            attempts.append(attempt(model, schema, X, ref, precision))
            check_margin(model, attempts[-1])
            if attempts[-1].passed:
                break
    finally:
        write_json(GATE_REPORT, gate_report(model, attempts))
    doc, onnx_bytes = serving_document(model, schema, test.X, X, ref, attempts, model_md5)
    with atomic_write(ONNX_FILE, "wb") as fh:
        fh.write(onnx_bytes)
    write_json(SERVING_FILE, doc)
    # The served path and why, in `dvc repro`'s output (not only in serving.json).
    served = "ONNX graph" if doc["path"] == "onnx" else "pickle (exact path)"
    print(f"export: serves the {served}: {doc['reason']}")
