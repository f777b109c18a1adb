"""The two ways a verified model is run: its ONNX graph (onnxruntime), or its pickle (the exact path).

serving.json, written by the pipeline's export stage, says which one: the ONNX graph when skl2onnx
converted the model and the graph passed the faithfulness gate, otherwise the scikit-learn pickle.
scikit-learn and joblib are imported only by `SklearnRunner`, so the ONNX path never loads them.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from api.batch import Batch
from contract import ContractError
from contract.metadata import Metadata
from contract.serving import OnnxGraph

_ONNX_DTYPES = {"double": np.float64, "float": np.float32}
# Below this many rows a per-row dictionary lookup of the label costs less than numpy's unique.
_LOOKUP_PER_ROW = 64


@dataclass(eq=False)
class Scores:
    """What a model gives for a batch: class indices and probabilities, or regression values.

    The numbers stay float64 arrays up to the response: checking and writing 1,000 rows from an
    array costs a fifth of what the same rows cost as Python floats (measured: 31 µs against 160).
    """

    labels: list[int] | None = None  # index into Metadata.classes, per row
    probabilities: np.ndarray | None = None  # (rows, classes) float64, in Metadata.classes order
    values: np.ndarray | None = None  # (rows,) float64 (regression)

    def __post_init__(self) -> None:
        # A runner may give lists or float32: every reader then sees float64 (checked by type first:
        # a single row's scores are sliced and re-made on the coalescing path, and each µs shows).
        p, v = self.probabilities, self.values
        if p is not None and (type(p) is not np.ndarray or p.dtype != np.float64):
            self.probabilities = np.asarray(p, dtype=np.float64)
        if v is not None and (type(v) is not np.ndarray or v.dtype != np.float64 or v.ndim != 1):
            self.values = np.asarray(v, dtype=np.float64).reshape(-1)

    @property
    def rows(self) -> int:
        numbers = self.probabilities if self.probabilities is not None else self.values
        return 0 if numbers is None else len(numbers)

    def slice(self, start: int, stop: int) -> Scores:
        """The scores of rows [start, stop)."""
        return Scores(
            labels=None if self.labels is None else self.labels[start:stop],
            probabilities=None if self.probabilities is None else self.probabilities[start:stop],
            values=None if self.values is None else self.values[start:stop],
        )

    def __eq__(self, other: object) -> bool:
        """Same labels and bit-identical numbers (arrays: == would compare element-wise)."""
        if not isinstance(other, Scores):
            return NotImplemented
        return (
            self.labels == other.labels
            and _same_bits(self.probabilities, other.probabilities)
            and _same_bits(self.values, other.values)
        )

    @staticmethod
    def joined(parts: Sequence[Scores]) -> Scores:
        """Scores of consecutive batches as one."""

        def concat(arrays: list[np.ndarray | None]) -> np.ndarray | None:
            return None if any(a is None for a in arrays) else np.concatenate(arrays)  # type: ignore[arg-type]

        labels = [p.labels for p in parts]
        return Scores(
            labels=None if any(x is None for x in labels) else [v for x in labels for v in x or ()],
            probabilities=concat([p.probabilities for p in parts]),
            values=concat([p.values for p in parts]),
        )


def _same_bits(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and a.tobytes() == b.tobytes()


class Runner(Protocol):
    kind: str  # "onnx" | "sklearn"

    def predict(self, batch: Batch) -> Scores: ...


def quiet_onnxruntime() -> None:
    """onnxruntime, when it loads, stores a telemetry device ID under $XDG_CACHE_HOME (~/.cache)
    and, where it cannot (the image's read-only root), prints a colour-coded warning on stderr
    before any setting of ours applies: not a JSON log line. Point it at the temp directory then."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=cache):
            pass
    except OSError:
        os.environ["XDG_CACHE_HOME"] = tempfile.gettempdir()


def quiet_loky() -> None:
    """scikit-learn sizes its OpenMP pools (HistGradientBoosting's predict, for one) with joblib's
    count of physical cores, which runs `lscpu`/`cat`; the image has neither, so joblib (loky)
    warns with a traceback on stderr. A count set by LOKY_MAX_CPU_COUNT below the CPUs skips that
    probe: one, as the ONNX path's one-thread sessions (the workers already use the cores)."""
    os.environ.setdefault("LOKY_MAX_CPU_COUNT", "1")


class OnnxRunner:
    """An onnxruntime session built from the verified graph bytes; numeric columns are fed as the
    [rows, k] blocks serving.json describes, categorical ones as [rows, 1] strings."""

    kind = "onnx"

    def __init__(self, graph: OnnxGraph, onnx_bytes: bytes, metadata: Metadata, where: str):
        quiet_onnxruntime()
        import onnxruntime as ort  # type: ignore[import-untyped]

        options = ort.SessionOptions()
        # One thread, sequential: requests are one or a few rows, where thread hand-offs cost more
        # than they save, and the server's workers already use the cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: its warnings are not JSON log lines
        try:
            self.session = ort.InferenceSession(
                onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types, not exported stably
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ContractError(f"{where}: onnxruntime cannot load the graph: {first[:200]}") from None
        graph_inputs = {i.name for i in self.session.get_inputs()}
        graph_outputs = {o.name for o in self.session.get_outputs()}
        declared = {i.name for i in graph.inputs}
        if declared != graph_inputs:
            raise ContractError(
                f"{where}: serving.json's onnx.inputs {sorted(declared)} are not the graph's "
                f"inputs {sorted(graph_inputs)}"
            )
        outputs = [graph.label, graph.probabilities] if metadata.is_classifier else [graph.value]
        self._outputs = [name for name in outputs if name is not None]
        unknown = [name for name in self._outputs if name not in graph_outputs]
        if unknown:
            raise ContractError(f"{where}: the graph has no output named {unknown[0]!r}")
        # The model's columns: a date arrives as its numeric parts, after the numeric features.
        numeric = [f.name for f in metadata.model_features if f.numeric]
        position = {name: k for k, name in enumerate(numeric)}
        # Numeric inputs: (name, column indices in Batch.numeric or None for all of them in order,
        # dtype, width); an [n, 1] input is a block of one.
        self._numeric_inputs: list[tuple[str, np.ndarray | None, type, int]] = []
        categorical_input = {spec.features[0]: spec.name for spec in graph.inputs if spec.type == "string"}
        # In metadata order, as Batch.categorical holds the columns.
        self._categorical_features = [f.name for f in metadata.model_features if not f.numeric]
        self._categorical_inputs = [categorical_input[name] for name in self._categorical_features]
        for spec in graph.inputs:
            if spec.type == "string":
                continue
            indices = [position[name] for name in spec.features]
            whole = indices == list(range(len(numeric)))
            self._numeric_inputs.append(
                (spec.name, None if whole else np.array(indices), _ONNX_DTYPES[spec.type], len(indices))
            )
        self._missing_string = graph.missing_string
        self._classifier = metadata.is_classifier
        self._class_index = {c: i for i, c in enumerate(metadata.classes)}

    def feed(self, batch: Batch) -> dict[str, np.ndarray]:
        """Input name -> array: numeric blocks sliced from the batch matrix, categories [rows, 1]."""
        feed: dict[str, np.ndarray] = {}
        for name, indices, dtype, width in self._numeric_inputs:
            block = batch.numeric if indices is None else batch.numeric[:, indices]
            feed[name] = np.ascontiguousarray(block, dtype=dtype).reshape(len(block), width)
        for name, feature, column in zip(
            self._categorical_inputs, self._categorical_features, batch.categorical, strict=True
        ):
            if feature in batch.missing:
                column = [self._missing_string if v is None else v for v in column]
            feed[name] = np.array(column, dtype=object).reshape(-1, 1)
        return feed

    def predict(self, batch: Batch) -> Scores:
        results = self.session.run(self._outputs, self.feed(batch))
        if not self._classifier:
            return Scores(values=results[0])
        labels, probabilities = results
        return Scores(labels=self._label_indices(labels), probabilities=probabilities)

    def _label_indices(self, labels: np.ndarray) -> list[int]:
        """Each row's label as its index in the metadata's classes: one vectorised comparison per
        class (a classifier has few) rather than a lookup per row."""
        flat = labels.reshape(-1)
        if len(flat) < _LOOKUP_PER_ROW:
            return [self._class_index[str(label)] for label in flat.tolist()]
        indices = np.full(len(flat), -1, dtype=np.int64)
        for label, index in self._graph_labels(flat.dtype).items():
            indices[flat == label] = index
        if (indices < 0).any():  # a label the metadata does not know: say which, as a lookup would
            unknown = next(str(v) for v, i in zip(flat.tolist(), indices.tolist(), strict=True) if i < 0)
            raise KeyError(unknown)
        result: list[int] = indices.tolist()
        return result

    def _graph_labels(self, dtype: np.dtype) -> dict[Any, int]:
        """The classes as the graph writes its labels (strings, or integers for integer classes)."""
        if dtype.kind in "iu":
            return {int(c): i for c, i in self._class_index.items() if c.lstrip("-").isdigit()}
        return dict(self._class_index)


class SklearnRunner:
    """The exact path: the scikit-learn pipeline itself, unpickled from bytes already md5-checked."""

    kind = "sklearn"

    def __init__(self, model_bytes: bytes, metadata: Metadata, missing_string: str, where: str):
        quiet_loky()
        try:
            import joblib  # only here: the ONNX path never imports scikit-learn or joblib

            self.model: Any = joblib.load(io.BytesIO(model_bytes))
        except ImportError as exc:  # an image built for the ONNX path carries no scikit-learn
            raise ContractError(
                f"{where}: the exact path needs {exc.name or 'scikit-learn'} "
                "(the image for such a model installs requirements/serve-sklearn.txt)"
            ) from None
        features = metadata.model_features  # a date as its numeric parts, after the numeric features
        self._names = [f.name for f in features]
        self._numeric = {f.name: k for k, f in enumerate(f for f in features if f.numeric)}
        self._categorical = {f.name: k for k, f in enumerate(f for f in features if not f.numeric)}
        self._classifier = metadata.is_classifier
        self._missing_string = missing_string
        if self._classifier:
            classes = [str(c) for c in getattr(self.model, "classes_", [])]
            if classes != list(metadata.classes):
                raise ContractError(f"{where}: the model's classes {classes} differ from the metadata's")
        self._frame: Any = None
        fitted_names = getattr(self.model, "feature_names_in_", None)
        if fitted_names is not None:
            # Fitted on a DataFrame: column selection by name needs one at predict time too.
            if [str(n) for n in fitted_names] != self._names:
                raise ContractError(f"{where}: the model's input columns differ from the metadata's features")
            try:
                import pandas  # type: ignore[import-untyped]
            except ImportError:
                raise ContractError(
                    f"{where}: the model was fitted on a pandas DataFrame, and pandas is not installed"
                ) from None
            self._frame = pandas.DataFrame

    def _inputs(self, batch: Batch) -> Any:
        columns: dict[str, Sequence[Any] | np.ndarray] = {}
        for name in self._names:
            if name in self._numeric:
                columns[name] = batch.numeric[:, self._numeric[name]]
            else:
                column = batch.categorical[self._categorical[name]]
                # A categorical gap reaches the model as the contract's missing string, as in training.
                gap = self._missing_string
                columns[name] = np.array([gap if v is None else v for v in column], dtype=object)
        if self._frame is not None:
            return self._frame(columns, columns=self._names)
        matrix = np.empty((batch.rows, len(self._names)), dtype=object if self._categorical else np.float64)
        for k, name in enumerate(self._names):
            matrix[:, k] = columns[name]
        return matrix

    def predict(self, batch: Batch) -> Scores:
        inputs = self._inputs(batch)
        if not self._classifier:
            return Scores(values=self.model.predict(inputs))
        probabilities = np.asarray(self.model.predict_proba(inputs), dtype=np.float64)
        # The first most probable class, as scikit-learn's own predict does for these estimators.
        return Scores(labels=probabilities.argmax(axis=1).tolist(), probabilities=probabilities)
