"""What the service tests share: FastAPI's TestClient, the error envelope's checks, V2 tensors, the
cost of one raw ASGI request, and agreement with scikit-learn over a test split (the artifacts and
settings are in harness/; the fixtures in the conftest files)."""

from __future__ import annotations

import asyncio
import math
import re
import time
import tracemalloc
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the dev lock
import yaml
from starlette.exceptions import StarletteDeprecationWarning

from contract import load_verified_pickle
from contract.dates import date_parts, part_names
from harness import REPO_ROOT, Artifacts

# Starlette 1.x prefers httpx2 for its TestClient and warns (an error under this project's
# filterwarnings) when only httpx is installed; the client works the same either way.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient as TestClient  # re-exported: every service test uses it

INFER = "/v2/models/lockstep/infer"
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
CHUNK = 64 * 1024  # what uvicorn hands the app per receive() at most, roughly


def assert_error(reply: Any, status: int, code: str, request_id: str | None = None) -> dict[str, Any]:
    """The envelope's status and code, and the request id in both header and body."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    error: dict[str, Any] = reply.json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    assert error["request_id"] == reply.headers["x-request-id"]
    if request_id is None:
        assert GENERATED_ID.fullmatch(error["request_id"])
    else:
        assert error["request_id"] == request_id
    assert "Traceback" not in reply.text
    return error


def unknown_keys_row(count: int) -> bytes:
    """One named row of `count` unknown keys (hex numbers): 11 bytes a key, so 1.5 million fit in 16 MiB."""
    return b'{"instances":[{' + b",".join(b'"%x":0' % i for i in range(count)) + b"}]}"


def request_cost(app: Any, body: bytes) -> tuple[int, dict[str, Any], float, float]:
    """Status, JSON answer, peak traced MiB and CPU seconds of one POST /predict through the ASGI app.

    The body arrives in 64 KiB chunks as from a socket; it exists before tracing starts, so the peak
    is what the worker allocates (chunk copies, the joined body, parsing, the answer). The request
    runs without awaiting anything but receive(), so its CPU time bounds how long it blocks the loop.
    """
    view = memoryview(body)
    offsets: Iterator[int] = iter(())
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        start = next(offsets)
        return {
            "type": "http.request",
            "body": bytes(view[start : start + CHUNK]),
            "more_body": start + CHUNK < len(body),
        }

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": "/predict",
        "raw_path": b"/predict",
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 1),
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }

    async def run(traced: bool) -> float:
        """One request: its peak traced MiB if `traced`, else its CPU seconds."""
        nonlocal offsets
        offsets = iter(range(0, len(body), CHUNK))
        sent.clear()
        if traced:
            tracemalloc.start()
            await app(scope, receive, send)
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            return peak
        started = time.process_time()
        await app(scope, receive, send)
        return time.process_time() - started

    peak = asyncio.run(run(traced=True))
    # CPU time untraced (tracing slows every allocation), the least of three: the cost of the work,
    # not of a neighbour that took the core meanwhile on a shared CI host.
    seconds = min(asyncio.run(run(traced=False)) for _ in range(3))
    [start, body_message] = sent
    return start["status"], orjson.loads(body_message["body"]), peak, seconds


def parse_peak_mib(body: bytes) -> float:
    """Peak traced MiB of parsing the body once with orjson (the floor for any request that reads it)."""
    tracemalloc.start()
    document = orjson.loads(body)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    del document
    return peak


def check_error_body(reply: Any, status: int, row: int | None, field: str | None) -> None:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    assert "Traceback" not in reply.text
    error = reply.json()["error"]
    assert error["status"] == status
    assert error["message"]
    assert error["request_id"] == reply.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", error["request_id"])  # generated: these requests send none
    located = [(e["row"], e["field"]) for e in error["errors"]]
    assert (row, field) in located, located


def split_rows(artifacts: Artifacts) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """data/prepared/test.csv as the model's input frame, and as JSON rows (null for a gap)."""
    meta = artifacts.metadata_document()
    kinds = {f["name"]: f["kind"] for f in meta["features"]}
    frame = pd.read_csv(
        artifacts.test_split, dtype={n: "object" for n, k in kinds.items() if k != "numeric"}
    )[list(kinds)]
    rows = [
        {n: None if isinstance(v, float) and math.isnan(v) else v for n, v in record.items()}
        for record in frame.to_dict("records")
    ]
    # The contract's way of feeding the pickle: a categorical gap is serving.json's missing_string.
    gap = artifacts.serving_document()["missing_string"]
    for name, kind in kinds.items():
        if kind == "categorical":
            frame[name] = frame[name].astype(object).where(frame[name].notna(), gap)
    # And a date as its parts (contract.dates), after the other features.
    model = frame[[n for n, k in kinds.items() if k != "date"]].copy()
    for name in (n for n, k in kinds.items() if k == "date"):
        parts = [date_parts(v) if isinstance(v, str) else None for v in frame[name].tolist()]
        for j, part in enumerate(part_names(name)):
            model[part] = [math.nan if p is None else p[j] for p in parts]
    return model, rows


def assert_within_gate(served: Any, expected: Any, gate: dict[str, Any]) -> None:
    """The gate's own measure: |got - expected|, or relative to max(1, |expected|) for regression."""
    served, expected = np.asarray(served, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    scale = np.maximum(1.0, np.abs(expected)) if gate.get("measure") == "relative" else 1.0
    worst = float(np.max(np.abs(served - expected) / scale))
    assert worst <= gate["tolerance"], f"worst difference {worst:.3g} > {gate['tolerance']:g}"


def served_agree_with_in_process(client: TestClient, artifacts: Artifacts) -> None:
    model, _ = load_verified_pickle(artifacts.model, artifacts.lock)  # md5 before unpickling
    frame, rows = split_rows(artifacts)
    gate = artifacts.serving_document()["gate"]
    positional = [list(row.values()) for row in rows]
    for instances in (rows, positional):  # both request formats, in one batch
        reply = client.post("/predict", json={"instances": instances})
        assert reply.status_code == 200, reply.text
        predictions = reply.json()["predictions"]
        if hasattr(model, "predict_proba"):
            expected = model.predict_proba(frame)
            classes = [str(c) for c in model.classes_]
            served = np.array([[p["probabilities"][c] for c in classes] for p in predictions])
            assert [p["label"] for p in predictions] == [str(c) for c in model.predict(frame)]
        else:
            expected = model.predict(frame)
            served = np.array([p["value"] for p in predictions])
        assert_within_gate(served, expected, gate)
    # And one row per request, as most clients call it.
    for row, want in zip(rows[:10], expected[:10], strict=True):
        [prediction] = client.post("/predict", json={"instances": [row]}).json()["predictions"]
        got = (
            list(prediction["probabilities"].values())
            if "probabilities" in prediction
            else prediction["value"]
        )
        assert_within_gate(got, want, gate)


def per_feature(rows: list[dict[str, Any]], names: list[str], shape1: bool = True) -> list[dict[str, Any]]:
    """One FP64 tensor per feature, [N, 1] (or [N]), flat data."""
    n = len(rows)
    return [
        {
            "name": name,
            "shape": [n, 1] if shape1 else [n],
            "datatype": "FP64",
            "data": [r[name] for r in rows],
        }
        for name in names
    ]


def matrix(rows: list[dict[str, Any]], names: list[str], nested: bool = False) -> dict[str, Any]:
    """One [N, F] FP64 tensor, flat (row-major) or nested."""
    values = [[r[name] for name in names] for r in rows]
    data = values if nested else [v for row in values for v in row]
    return {"name": "input-0", "shape": [len(rows), len(names)], "datatype": "FP64", "data": data}


MIB_UNITS = {"": 2**-20, "k": 2**-10, "ki": 2**-10, "m": 1, "mi": 1, "g": 1024, "gi": 1024}


def mib(quantity: str) -> float:
    """Docker's 336m, Kubernetes' 336Mi and compose's 336M, in MiB (all binary here)."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]i?)?b?", quantity.strip().lower())
    assert found, f"not a memory quantity: {quantity!r}"
    return float(found[1]) * MIB_UNITS[found[2] or ""]


def deploy_memory_limits() -> dict[str, float]:
    """Every memory limit a replica runs under, in MiB, read from where it is set."""
    from imagetool.ship.container import RUN_MEMORY

    deployment = yaml.safe_load((REPO_ROOT / "deploy/k8s/base/deployment.yaml").read_text())
    [k8s] = deployment["spec"]["template"]["spec"]["containers"]
    service = yaml.safe_load((REPO_ROOT / "deploy/kserve/inferenceservice.yaml").read_text())
    kserve = service["spec"]["predictor"]["model"]
    compose = yaml.safe_load((REPO_ROOT / "deploy/compose.yaml").read_text())["services"]["api"]
    return {
        "make run (imagetool/ship/container.py RUN_MEMORY)": mib(RUN_MEMORY),
        "deploy/k8s": mib(k8s["resources"]["limits"]["memory"]),
        "deploy/kserve": mib(kserve["resources"]["limits"]["memory"]),
        "deploy/compose.yaml": mib(str(compose["deploy"]["resources"]["limits"]["memory"])),
    }
