"""The peer baseline: MLServer 1.7.1 (V2 / Open Inference Protocol) serving the same model pickle.

`make bench` runs it in the same session as lockstep, on the same host and load generator, so the
ratio between them means something. MLServer lives in its own venv (build/peers/mlserver, from the
hash-locked requirements/mlserver.txt) because its pins (FastAPI, grpc, ...) are not ours.

    python -m bench.peer_mlserver        # set up the venv if needed, serve, print the figures

A model fitted on a DataFrame (named columns, mixed types) gets one V2 input per column with the
request content type "pd", which MLServer decodes into a DataFrame; a model fitted on a plain
matrix gets one [N, F] FP64 tensor.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness import REPO_ROOT, Server, free_port, serving

VENV = REPO_ROOT / "build" / "peers" / "mlserver"
LOCK = REPO_ROOT / "requirements" / "mlserver.txt"
MODEL_NAME = "lockstep"


def ensure_venv() -> Path:
    """MLServer's venv, created from the hash-locked requirements on first use (about a minute)."""
    stamp = VENV / ".installed"
    if stamp.exists() and stamp.read_text() == LOCK.read_text():
        return VENV
    print(f"peer: installing MLServer into {VENV.relative_to(REPO_ROOT)} (hash-locked)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [str(VENV / "bin/pip"), "install", "--quiet", "--require-hashes", "--no-deps", "-r", str(LOCK)],
        check=True,
    )
    stamp.write_text(LOCK.read_text())
    return VENV


@contextmanager
def mlserver(model_path: Path, lock_path: Path, log_path: Path) -> Iterator[Server]:
    """MLServer with one process serving `model_path`, its output in `log_path`, until ready.
    MLServer unpickles what it is given: it gets a private copy of bytes whose md5 matched dvc.lock
    and whose sha256 matched models/model.sha256."""
    from contract import load_dvc_lock, verified_pickle_bytes

    model_bytes, _ = verified_pickle_bytes(model_path, load_dvc_lock(lock_path), lock_path, "model")
    with mlserver_serving(model_bytes, model_path.name, log_path) as running:
        yield running


@contextmanager
def mlserver_serving(
    model_bytes: bytes, filename: str, log_path: Path, parallel: int = 0
) -> Iterator[Server]:
    """MLServer serving a pickle the caller made or verified, until ready; `parallel` inference
    worker processes (0: inference in the server's own process)."""
    venv = ensure_venv()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mlserver-") as tmp:
        folder = Path(tmp)
        model_copy = folder / filename
        model_copy.write_bytes(model_bytes)
        settings = {
            "http_port": port,
            "grpc_port": free_port(),
            "metrics_port": free_port(),
            "host": "127.0.0.1",
            "parallel_workers": parallel,
            "debug": False,
        }
        (folder / "settings.json").write_text(json.dumps(settings))
        (folder / "model-settings.json").write_text(
            json.dumps(
                {
                    "name": MODEL_NAME,
                    "implementation": "mlserver_sklearn.SKLearnModel",
                    "parameters": {"uri": str(model_copy)},
                }
            )
        )
        command = [str(venv / "bin/mlserver"), "start", str(folder)]
        env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
        with serving(command, port, f"/v2/models/{MODEL_NAME}/ready", env=env, log=log_path) as running:
            yield running


def v2_request(rows: list[dict[str, Any]], features: list[dict[str, Any]], *, proba: bool) -> dict[str, Any]:
    """A V2 inference request for `rows` (dicts of feature -> value), one input per column."""
    inputs = []
    for feature in features:
        name, numeric = feature["name"], feature.get("kind", "numeric") == "numeric"
        values = [row.get(name) for row in rows]
        inputs.append({
            "name": name,
            "shape": [len(rows), 1],
            "datatype": "FP64" if numeric else "BYTES",
            "data": [float("nan") if v is None else v for v in values] if numeric else
                    ["" if v is None else str(v) for v in values],
        })  # fmt: skip
    request: dict[str, Any] = {"parameters": {"content_type": "pd"}, "inputs": inputs}
    if proba:
        request["outputs"] = [{"name": "predict_proba"}]
    return request


def matrix_request(rows: list[list[float]], *, proba: bool) -> dict[str, Any]:
    """A V2 request with one [N, F] FP64 tensor, for a model fitted on a plain matrix."""
    flat = [v for row in rows for v in row]
    request: dict[str, Any] = {
        "inputs": [{"name": "X", "shape": [len(rows), len(rows[0])], "datatype": "FP64", "data": flat}]
    }
    if proba:
        request["outputs"] = [{"name": "predict_proba"}]
    return request


def requests_for(
    model_path: Path, lock_path: Path, metadata: dict[str, Any], n: int, *, proba: bool
) -> dict[str, Any]:
    """The V2 body MLServer needs for this pickle: per column if it was fitted on named columns."""
    from contract import load_verified_pickle

    model, _ = load_verified_pickle(model_path, lock_path)  # md5 before unpickling
    example = metadata["example"]
    features = metadata["features"]
    if getattr(model, "feature_names_in_", None) is not None:
        return v2_request([example] * n, features, proba=proba)
    return matrix_request([[example[f["name"]] for f in features]] * n, proba=proba)


def main() -> int:
    from bench.serve_bench import wrk

    metadata = json.loads((REPO_ROOT / "models/metadata.json").read_text())
    model_path = REPO_ROOT / "models/model.joblib"
    lock_path = REPO_ROOT / "dvc.lock"
    out = REPO_ROOT / "build" / "peers"
    out.mkdir(parents=True, exist_ok=True)
    with mlserver(model_path, lock_path, out / "mlserver.log") as peer:
        results: dict[str, Any] = {"startup_to_ready_s": peer.startup_seconds}
        infer = f"{peer.url}/v2/models/{MODEL_NAME}/infer"
        for name, n, proba in (
            ("one_label", 1, False),
            ("batch_labels", 1000, False),
            ("batch_proba", 1000, True),
        ):
            body = out / f"mlserver_{name}.json"
            body.write_text(json.dumps(requests_for(model_path, lock_path, metadata, n, proba=proba)))
            with urllib.request.urlopen(
                urllib.request.Request(
                    infer, data=body.read_bytes(), headers={"Content-Type": "application/json"}
                )
            ) as reply:
                assert reply.status == 200
            run = wrk(infer, body, 16, 5)
            run["rows_per_s"] = run["requests_per_s"] * n
            results[name] = run
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
