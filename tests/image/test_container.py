"""The image runs hardened and serves the same predictions as the model in-process."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import urllib.request
from pathlib import Path

import joblib
import numpy as np
import pytest

from tests.image.conftest import ROOT, Container

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _inspect(cid: str) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(["docker", "inspect", cid], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]  # type: ignore[no-any-return]


def _exec(cid: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "exec", cid, *cmd], capture_output=True, text=True, check=False)


def test_container_runs_as_non_root_numeric_user(container: Container) -> None:
    assert _inspect(container.id)["Config"]["User"] == "10001:10001"
    assert _exec(container.id, "id", "-u").stdout.strip() == "10001"


def test_root_filesystem_is_read_only(container: Container) -> None:
    assert _inspect(container.id)["HostConfig"]["ReadonlyRootfs"] is True
    proc = _exec(container.id, "python", "-c", "open('/app/probe', 'w')")
    assert proc.returncode != 0
    assert "Read-only file system" in proc.stderr


def test_all_capabilities_are_dropped(container: Container) -> None:
    status = _exec(container.id, "cat", "/proc/1/status").stdout
    caps = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if line.startswith("Cap")}
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == "0000000000000000"
    assert "no-new-privileges" in _inspect(container.id)["HostConfig"]["SecurityOpt"]


def test_becomes_ready_and_healthcheck_passes(container: Container) -> None:
    assert container.ready_seconds < 15
    assert _exec(container.id, "python", "-m", "api.healthcheck").returncode == 0


def test_predict_matches_the_in_process_model(container: Container) -> None:
    model = joblib.load(ROOT / "models/model.joblib")
    meta = json.loads((ROOT / "models/metadata.json").read_text())
    names = [f["name"] for f in meta["features"]]
    with Path(ROOT / "data/prepared/test.csv").open() as f:
        rows = [[float(r[n]) for n in names] for r in csv.DictReader(f)]
    body = json.dumps({"instances": rows}).encode()
    req = urllib.request.Request(
        f"{container.url}/predict", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        served = json.load(r)["predictions"]
    X = np.asarray(rows, dtype=np.float64)
    expected_labels = [str(c) for c in model.predict(X)]
    expected_proba = model.predict_proba(X)
    classes = [str(c) for c in model.classes_]
    assert [p["label"] for p in served] == expected_labels
    got = np.array([[p["probabilities"][c] for c in classes] for p in served])
    np.testing.assert_allclose(got, expected_proba, rtol=1e-9, atol=1e-12)


def test_serves_the_export_without_scikit_learn_scipy_or_joblib_installed(container: Container) -> None:
    probe = "import importlib.util as u; print([m for m in ('sklearn', 'scipy', 'joblib') if u.find_spec(m)])"
    assert _exec(container.id, "python", "-c", probe).stdout.strip() == "[]"
    with urllib.request.urlopen(f"{container.url}/model", timeout=10) as r:
        doc = json.load(r)
    assert (
        doc["artifacts"]["export"]["md5"]
        == hashlib.md5((ROOT / "models/model.json").read_bytes()).hexdigest()
    )
    serve_lock = hashlib.sha256((ROOT / "requirements-serve.txt").read_bytes()).hexdigest()
    assert doc["locks"]["requirements"]["sha256"] == serve_lock
    assert _inspect(container.id)["Config"]["Labels"]["io.lockstep.requirements.sha256"] == serve_lock
