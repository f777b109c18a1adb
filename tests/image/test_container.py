"""The image runs hardened and serves the same predictions as the model in-process."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import subprocess
import tarfile
import urllib.request

import numpy as np
import pytest

from contract import MODEL_FILE, ONNX_FILE, SCHEMA_FILE, SERVING_FILE, TEST_CSV, load_verified_pickle
from pipeline.data import read_table
from pipeline.features import model_input
from pipeline.schema import read_schema
from tests.image.conftest import ROOT, Container

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _inspect(cid: str) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(["docker", "inspect", cid], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]  # type: ignore[no-any-return]


def _exec(cid: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "exec", cid, *cmd], capture_output=True, text=True, check=False)


def test_container_runs_as_non_root_numeric_user(container: Container) -> None:
    assert _inspect(container.id)["Config"]["User"] == "10001:10001"
    assert _exec(container.id, "python", "-c", "import os; print(os.getuid())").stdout.strip() == "10001"


def test_root_filesystem_is_read_only(container: Container) -> None:
    assert _inspect(container.id)["HostConfig"]["ReadonlyRootfs"] is True
    proc = _exec(container.id, "python", "-c", "open('/app/probe', 'w')")
    assert proc.returncode != 0
    assert "Read-only file system" in proc.stderr


def test_all_capabilities_are_dropped(container: Container) -> None:
    status = _exec(container.id, "python", "-c", "print(open('/proc/1/status').read())").stdout
    caps = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if line.startswith("Cap")}
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == "0000000000000000"
    assert "no-new-privileges" in _inspect(container.id)["HostConfig"]["SecurityOpt"]


def test_becomes_ready_and_healthcheck_passes(container: Container) -> None:
    assert container.ready_seconds < 15
    assert _exec(container.id, "python", "-m", "api.healthcheck").returncode == 0


def test_predict_matches_the_in_process_model(container: Container) -> None:
    """The whole test split through the container equals scikit-learn in process (gate tolerance)."""
    schema = read_schema(ROOT / SCHEMA_FILE)
    test = read_table(ROOT / TEST_CSV, schema)
    model, _ = load_verified_pickle(ROOT / MODEL_FILE, ROOT / "dvc.lock")  # md5 before unpickling
    rows = [{k: (None if v != v else v) for k, v in row.items()} for row in test.X.to_dict("records")]
    body = json.dumps({"instances": rows}).encode()
    req = urllib.request.Request(
        f"{container.url}/predict", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        served = json.load(r)["predictions"]
    X = model_input(test.X, schema)
    tolerance = json.loads((ROOT / SERVING_FILE).read_text())["gate"]["tolerance"]
    assert [p["label"] for p in served] == [str(c) for c in model.predict(X)]
    classes = [str(c) for c in model.classes_]
    got = np.array([[p["probabilities"][c] for c in classes] for p in served])
    np.testing.assert_allclose(got, model.predict_proba(X), rtol=0, atol=tolerance)


def test_serves_the_onnx_graph_without_scikit_learn_or_the_pickle(container: Container) -> None:
    modules = "('sklearn', 'scipy', 'joblib', 'pandas')"
    probe = f"import importlib.util as u; print([m for m in {modules} if u.find_spec(m)])"
    assert _exec(container.id, "python", "-c", probe).stdout.strip() == "[]"
    listing = _exec(container.id, "python", "-c", "import os; print(sorted(os.listdir('/app/models')))")
    assert listing.stdout.strip() == str(sorted(["metadata.json", "model.onnx", "serving.json"]))
    with urllib.request.urlopen(f"{container.url}/model", timeout=10) as r:
        doc = json.load(r)
    assert doc["serving"]["path"] == "onnx"
    assert doc["artifacts"]["onnx"]["md5"] == hashlib.md5((ROOT / ONNX_FILE).read_bytes()).hexdigest()
    serve_lock = hashlib.sha256((ROOT / "requirements-serve.txt").read_bytes()).hexdigest()
    assert doc["locks"]["requirements"]["sha256"] == serve_lock
    assert _inspect(container.id)["Config"]["Labels"]["io.lockstep.requirements.sha256"] == serve_lock


def _image_files(cid: str) -> list[tarfile.TarInfo]:
    """Every entry of the container's filesystem, as `docker export` streams it."""
    export = subprocess.run(["docker", "export", cid], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(export)) as tar:
        return tar.getmembers()


def test_image_has_no_setuid_or_setgid_file_and_no_shell(container: Container) -> None:
    """The runtime root is the interpreter's package closure: nothing to escalate with, no shell."""
    files = _image_files(container.id)
    special = [f.name for f in files if f.mode & (stat.S_ISUID | stat.S_ISGID)]
    assert special == []
    names = {f.name.lstrip("./") for f in files}
    for gone in ("usr/bin/sh", "usr/bin/bash", "usr/bin/dash", "usr/bin/perl", "usr/bin/dpkg", "usr/bin/su",
                 "usr/bin/newgrp", "usr/sbin/unix_chkpwd", "usr/bin/apt"):  # fmt: skip
        assert gone not in names
    assert "usr/bin/python3.11" in names
