"""Prometheus metrics for one app instance (its own registry, so tests can build many apps)."""

import os
from collections import Counter as Tally
from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess

if TYPE_CHECKING:
    from api.batch import Batch

# Latency buckets resolve the sub-millisecond range where single-row predictions live.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_ROW_BUCKETS = (1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000, 50000)


def multiprocess_enabled() -> bool:
    """prometheus_client shares values between uvicorn workers through files in this directory."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class ServiceMetrics:
    """Request, prediction and model-version metrics; label children are cached per label set."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "lockstep_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "lockstep_http_request_duration_seconds",
            "Time from request start to the end of the response, by route, method and status",
            ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter("lockstep_predictions", "Predicted rows by class", ["label"], registry=r)
        self.rows = Histogram(
            "lockstep_prediction_rows",
            "Rows per successful /predict request",
            buckets=_ROW_BUCKETS,
            registry=r,
        )
        # Data-quality signals, not errors: the request is served (the preprocessing imputes gaps and
        # one-hot encodes an unseen category as all zeros), but a rising count means drifting input.
        self.missing_values = Counter(
            "lockstep_missing_value",
            "Values sent as null (missing), by feature",
            ["feature"],
            registry=r,
        )
        self.unknown_categories = Counter(
            "lockstep_unknown_category",
            "Categorical values the training data never had, by feature",
            ["feature"],
            registry=r,
        )
        self.model_info = Gauge(
            "lockstep_model_info",
            "The served model: 1 for its version (md5), serving path, task and training scikit-learn version",
            ["version", "path", "task", "sklearn"],
            registry=r,
            multiprocess_mode="max",
        )
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._label_children: list[Counter] = []

    def set_model(self, version: str, path: str, task: str, sklearn: str, classes: Sequence[str]) -> None:
        """Publish the model-version info metric and prepare per-class counters."""
        self.model_info.labels(version=version, path=path, task=task, sklearn=sklearn).set(1)
        self._label_children = [self.predictions.labels(label=c) for c in classes]

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request and record its latency."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            labels = {"route": route, "method": method, "status": str(status)}
            children = (self.requests.labels(**labels), self.latency.labels(**labels))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_predictions(self, batch: "Batch", class_indices: list[int] | None) -> None:
        """Count the batch size, missing values and unknown categories, and predicted rows per class."""
        self.rows.observe(batch.rows)
        for feature, count in batch.missing.items():
            self.missing_values.labels(feature=feature).inc(count)
        for feature, count in batch.unknown.items():
            self.unknown_categories.labels(feature=feature).inc(count)
        if class_indices is None:  # regression
            return
        if len(class_indices) == 1:
            self._label_children[class_indices[0]].inc()
            return
        for index, count in Tally(class_indices).items():
            self._label_children[index].inc(count)

    def exposition(self) -> bytes:
        """Prometheus text format: across all workers in multiprocess mode, else this registry."""
        if multiprocess_enabled():
            merged = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)
