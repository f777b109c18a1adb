"""Loads the served model: artifacts verified against dvc.lock, the runner serving.json names, and
a start-up check that it reproduces scikit-learn's own output for the recorded check rows."""

from __future__ import annotations

import hashlib
import math
import platform
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from api.artifacts import VerifiedArtifacts, verify_artifacts
from api.batch import Batch
from api.coalesce import Coalescer, merge_batches
from api.errors import ClientError, problem
from api.runners import OnnxRunner, Runner, Scores, SklearnRunner
from api.settings import Settings
from api.validation import FLOAT32_MAX_VALUE, MAX_ABS_VALUE, InstanceParser
from contract import ContractError, md5_hex
from contract.metadata import Metadata
from contract.serving import ServingPlan

_SERVING_PACKAGES = ("numpy", "onnxruntime", "fastapi", "pydantic", "uvicorn")
# A few numbers (a single row's) are checked faster one by one than by a numpy pass.
_CHECK_ONE_BY_ONE = 16


@dataclass(frozen=True)
class ServedModel:
    """The loaded, verified model and everything the routes need to describe it."""

    version: str  # md5 of models/model.joblib, the model of record
    metadata: Metadata
    serving: ServingPlan
    parser: InstanceParser
    description: dict[str, Any]
    scorer: Coalescer  # how /predict calls the runner: small requests arriving together share a call

    async def score(self, batch: Batch) -> Scores:
        """The model's scores for a validated batch, for both endpoints: small requests arriving
        together share a call (the coalescer), and rows the model cannot score are refused."""
        scores = await self.scorer.predict(batch)
        check_finite(scores)
        return scores

    @property
    def runner(self) -> Runner:
        return self.scorer.runner

    @property
    def classes(self) -> tuple[str, ...]:
        return self.metadata.classes

    @property
    def trained_with(self) -> str:
        """The scikit-learn version that fitted the model."""
        return str(self.metadata.library_versions.get("scikit-learn", "unknown"))


def check_finite(scores: Scores) -> None:
    """Extreme valid inputs can still overflow a model's arithmetic (e.g. in float32): refuse those rows."""
    numbers = scores.probabilities if scores.probabilities is not None else scores.values
    if numbers is None:
        return
    if numbers.size <= _CHECK_ONE_BY_ONE and all(map(math.isfinite, numbers.flat)):
        return
    finite = np.isfinite(numbers)
    if finite.all():
        return
    bad_rows = np.flatnonzero(~finite.reshape(len(numbers), -1).all(axis=1)).tolist()
    problems = [problem(row, None, "feature values too large for the model to score") for row in bad_rows]
    raise ClientError(422, "out_of_range", f"row {bad_rows[0]}: feature values too large to score", problems)


def _worst_difference(scores: Scores, expected: list[Any], relative: bool) -> float:
    """The gate's measure: |got - expected|, or relative to max(1, |expected|) for regression values."""
    if scores.probabilities is not None:
        pairs = zip(scores.probabilities, expected, strict=True)
        return float(max(abs(g - e) for got, want in pairs for g, e in zip(got, want, strict=True)))
    assert scores.values is not None
    scale = (lambda e: max(1.0, abs(e))) if relative else (lambda e: 1.0)
    return float(max(abs(g - e) / scale(e) for g, e in zip(scores.values, expected, strict=True)))


def _labels_differ(scores: Scores, plan: ServingPlan, classes: tuple[str, ...], rows: slice) -> bool:
    if plan.check_labels is None or scores.labels is None:
        return False
    return [classes[i] for i in scores.labels] != plan.check_labels[rows]


def reproduce_check(
    runner: Runner, metadata: Metadata, plan: ServingPlan, where: Path, joined_rows: int = 256
) -> tuple[float, bool]:
    """Run serving.json's check rows (as one batch and one by one) and compare with scikit-learn's
    recorded output; refuse to serve unless within the gate's tolerance. Returns the worst difference,
    and whether every row's output was bit-identical alone, in the whole batch and in batches made by
    joining single-row requests, up to `joined_rows` rows (api.coalesce relies on that).

    The rows go through the request validator too, so they also prove it accepts what the model takes.
    """
    parser = InstanceParser(metadata.features, max_rows=len(plan.check_rows), max_abs=max_abs(plan))
    try:
        batch = parser.parse(orjson.dumps({"instances": plan.check_rows}))
    except ClientError as exc:
        raise ContractError(f"{where}: check.rows are not valid requests: {exc.message}") from None
    labels_differ = False
    try:
        scores = runner.predict(batch)
        worst = _worst_difference(scores, plan.check_expected, plan.relative)
        labels_differ = _labels_differ(scores, plan, metadata.classes, slice(None))
        singles = [parser.parse(orjson.dumps({"instances": [row]})) for row in plan.check_rows]
        alone = [runner.predict(one) for one in singles]
        for i, (one, want) in enumerate(zip(alone, plan.check_expected, strict=True)):
            worst = max(worst, _worst_difference(one, [want], plan.relative))
            labels_differ = labels_differ or _labels_differ(one, plan, metadata.classes, slice(i, i + 1))
        row_independent = _row_independent(runner, singles, alone, scores, joined_rows)
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        # The model cannot even score the rows it was checked on (onnxruntime and scikit-learn
        # raise these for inputs of the wrong type or shape): refuse, saying what it said.
        message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ContractError(
            f"{where}: the {runner.kind} path cannot score check.rows: {type(exc).__name__}: {message}"
        ) from None
    if labels_differ:
        raise ContractError(
            f"{where}: the {runner.kind} path gives other labels than scikit-learn's check.labels: "
            "refusing to serve it"
        )
    if not worst <= plan.tolerance:
        raise ContractError(
            f"{where}: the {runner.kind} path differs from scikit-learn's recorded output by {worst:.3g} "
            f"(allowed {plan.tolerance:g}): refusing to serve it"
        )
    return worst, row_independent


# Sizes of the joined batches the row-independence check scores (besides the largest allowed):
# kernels may switch strategy with the row count (e.g. a matrix product's blocking).
_JOINED_SIZES = (2, 3, 5, 16, 33, 100)


def _row_independent(
    runner: Runner, singles: list[Batch], alone: list[Scores], whole: Scores, joined_rows: int
) -> bool:
    """Whether each row scores bit-identically alone, in the whole batch, and among the check rows
    repeated into joined batches of several sizes up to `joined_rows`."""
    if whole.slice(0, len(singles)) != Scores.joined(alone):
        return False
    for size in sorted({n for n in _JOINED_SIZES if n < joined_rows} | ({joined_rows} - {0, 1})):
        picks = [i % len(singles) for i in range(size)]
        joined = runner.predict(merge_batches([singles[i] for i in picks]))
        if joined != Scores.joined([alone[i] for i in picks]):
            return False
    return True


def max_abs(plan: ServingPlan) -> float:
    """The largest |value| a numeric column takes: float32's range when the graph takes float inputs."""
    if plan.onnx is not None and any(i.type == "float" for i in plan.onnx.inputs):
        return FLOAT32_MAX_VALUE
    return MAX_ABS_VALUE


def _installed(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _file_digests(path: Path | None) -> dict[str, str] | None:
    """md5 and sha256 of a lock file, or None when it is not there."""
    if path is None or not path.is_file():
        return None
    data = path.read_bytes()
    return {"path": str(path), "md5": md5_hex(data), "sha256": hashlib.sha256(data).hexdigest()}


def _describe(
    settings: Settings, artifacts: VerifiedArtifacts, runner: Runner, worst: float, coalesce_rows: int
) -> dict[str, Any]:
    """The GET /model document: what is served and how, how it was trained, and from which locks."""
    meta, plan = artifacts.metadata, artifacts.serving
    files = {
        "model": settings.model_path,
        "onnx": settings.onnx_path,
        "serving": settings.serving_path,
        "metadata": settings.metadata_path,
    }
    packages = _SERVING_PACKAGES + (("scikit-learn",) if runner.kind == "sklearn" else ())
    return {
        "model_version": artifacts.md5s["model"],
        "task": artifacts.metadata.task,
        "serving": {
            "path": plan.path,
            "reason": plan.reason,
            "gate": plan.gate.to_json(),
            "startup_check": {"rows": len(plan.check_rows), "worst_abs_diff": worst},
            # Most rows one model call scores for requests that arrive together (0: one call each).
            "coalesce_max_rows": coalesce_rows,
            "onnx_opset": plan.onnx.opset if plan.onnx else None,
            # Both paths answer scikit-learn's predict() as the label, which for some estimators
            # (SVC's Platt scaling) is not always the most probable class: gate.labels_not_argmax.
            "label": "the estimator's predict(), not always the most probable class"
            if artifacts.metadata.is_classifier
            else None,
        },
        "estimator": meta.estimator,
        "target": meta.target,
        "classes": list(artifacts.metadata.classes) if artifacts.metadata.is_classifier else None,
        "features": [f.to_json() for f in meta.features],
        "example": meta.example,
        "params": meta.params,
        "metrics": meta.metrics,
        "library_versions": {
            "trained_with": meta.library_versions,
            "serving": {"python": platform.python_version(), **{p: _installed(p) for p in packages}},
        },
        "artifacts": {
            key: {"path": str(files[key]), "md5": md5} for key, md5 in sorted(artifacts.md5s.items())
        },
        "locks": {
            "dvc_lock": _file_digests(settings.dvc_lock_path),
            "requirements": _file_digests(settings.requirements_path),
        },
    }


def load_model(settings: Settings) -> ServedModel:
    """Verify every artifact, build the runner serving.json names, and check it reproduces the
    recorded output. Raises ContractError (one line) when anything does not hold."""
    artifacts = verify_artifacts(settings)
    metadata, plan = artifacts.metadata, artifacts.serving
    runner: Runner
    if plan.onnx is not None:
        runner = OnnxRunner(plan.onnx, artifacts.onnx_bytes, metadata, str(settings.onnx_path))
    else:
        runner = SklearnRunner(artifacts.model_bytes, metadata, plan.missing_string, str(settings.model_path))
    worst, row_independent = reproduce_check(
        runner, metadata, plan, settings.serving_path, settings.coalesce_max_rows
    )
    # Joining requests must not change any answer: only for runners shown to be row-independent.
    coalesce_rows = settings.coalesce_max_rows if row_independent else 0
    return ServedModel(
        version=artifacts.md5s["model"],
        metadata=metadata,
        serving=plan,
        parser=InstanceParser(metadata.features, settings.max_rows, max_abs(plan)),
        description=_describe(settings, artifacts, runner, worst, coalesce_rows),
        scorer=Coalescer(runner, coalesce_rows),
    )
