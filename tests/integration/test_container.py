"""The image runs hardened and serves the same predictions as the model in-process."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
import time
import urllib.request
from typing import Any

import numpy as np
import pytest

from contract import MODEL_FILE, ONNX_FILE, SCHEMA_FILE, SERVING_FILE, TEST_CSV, load_verified_pickle
from harness import REPO_ROOT as ROOT
from harness import free_port
from imagetool.ship.container import (
    HARDENED_FLAGS,
    RUN_MEMORY,
    RUN_PIDS,
    Container,
    made_run,
    make,
    make_run_command,
)
from pipeline.data import read_table
from pipeline.features import model_input
from pipeline.schema import read_schema

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _inspect(cid: str) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(["docker", "inspect", cid], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]  # type: ignore[no-any-return]


def _exec(cid: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "exec", cid, *cmd], capture_output=True, text=True, check=False)


# Run inside the container (the image has no shell): what the process can and cannot do, as JSON.
PROBE = """
import json, os, subprocess

def errno_of(fn):
    try:
        fn()
        return 0
    except OSError as e:
        return e.errno

def write(path):
    with open(path, "w") as f:
        f.write("#!/usr/bin/python3\\n")

def run_from_tmp():
    os.chmod("/tmp/probe", 0o755)
    subprocess.run(["/tmp/probe"], check=True)

def first(*paths):
    for p in paths:
        if os.path.exists(p):
            return open(p).read().strip()
    return None

status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
    "write_root": errno_of(lambda: write("/probe")),
    "write_app": errno_of(lambda: write("/app/probe")),
    "write_etc": errno_of(lambda: write("/etc/probe")),
    "write_tmp": errno_of(lambda: write("/tmp/probe")),
    "exec_tmp": errno_of(run_from_tmp),
    "status": {k: v.strip() for k, v in status.items()},
    # cgroup v2, else v1 (these hosts mount v1 controllers)
    "memory_max": first("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"),
    "memory_swap": first(
        "/sys/fs/cgroup/memory.swap.max", "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"
    ),
    "pids_max": first("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"),
}))
"""


@pytest.fixture(scope="module")
def inside(container: Container) -> dict[str, Any]:
    proc = _exec(container.id, "python", "-c", PROBE)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def _bytes(docker_size: str) -> int:
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    return int(docker_size[:-1]) * units[docker_size[-1].lower()]


def test_make_run_starts_the_image_with_exactly_the_hardened_flags() -> None:
    """One truth: imagetool.ship.container's HARDENED_FLAGS are `make run`'s, as make would run them."""
    cmd = make_run_command("lockstep-x", 18000, "some/image:tag")
    assert cmd == [
        "docker", "run", "--rm", "--name", "lockstep-x", *HARDENED_FLAGS,
        "-p", "127.0.0.1:18000:8000", "some/image:tag",
    ]  # fmt: skip
    # The caps a user overrides, and arm64's emulation flags, reach docker too.
    cmd = make_run_command(
        "lockstep-x", 18000, "t", ROOT, "PLATFORM=linux/arm64", "RUN_MEMORY=512m", "RUN_PIDS=64"
    )
    assert cmd[cmd.index("--memory") + 1] == cmd[cmd.index("--memory-swap") + 1] == "512m"
    assert cmd[cmd.index("--pids-limit") + 1] == "64"
    emulated = ["--platform", "linux/arm64", "--tmpfs", "/sys/devices/system/cpu:ro"]
    assert cmd[-7:] == [*emulated, "-p", "127.0.0.1:18000:8000", "t"]


def test_container_runs_as_non_root_numeric_user(inside: dict[str, Any]) -> None:
    assert (inside["uid"], inside["gid"], inside["groups"]) == (10001, 10001, [10001])


def test_root_filesystem_is_read_only(inside: dict[str, Any]) -> None:
    assert inside["write_root"] == inside["write_app"] == inside["write_etc"] == errno.EROFS


def test_tmp_is_writable_but_nothing_there_can_be_executed(inside: dict[str, Any]) -> None:
    assert inside["write_tmp"] == 0
    assert inside["exec_tmp"] == errno.EACCES


def test_no_capabilities_no_new_privileges_and_a_seccomp_filter(inside: dict[str, Any]) -> None:
    status = inside["status"]
    for cap in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        assert status[cap] == "0000000000000000", cap
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"  # filter mode: the engine's default profile


def test_memory_and_pids_caps_are_make_runs(inside: dict[str, Any]) -> None:
    memory = _bytes(RUN_MEMORY)
    assert int(inside["memory_max"]) == memory
    # swap off: v1 counts memory+swap (= memory), v2 swap alone (0)
    assert int(inside["memory_swap"]) in (memory, 0)
    assert int(inside["pids_max"]) == RUN_PIDS


def _removed_within(name: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if subprocess.run(["docker", "inspect", name], capture_output=True, check=False).returncode != 0:
            return True
        time.sleep(0.1)
    return False


def test_make_stop_stops_what_make_run_started(locked_image: str) -> None:
    name = f"lockstep-test-stop-{os.getpid()}"
    with made_run(locked_image, name, free_port()) as running:
        assert _inspect(running.id)["State"]["Running"] is True
        stop = subprocess.run(make(ROOT, "stop", f"RUN_NAME={name}"), capture_output=True, text=True)
        assert stop.stdout.strip() == f"stopped {name}"
        assert _removed_within(name, seconds=10)  # --rm: removed, not just stopped
    again = subprocess.run(make(ROOT, "stop", f"RUN_NAME={name}"), capture_output=True, text=True)
    assert again.stdout.strip() == f"{name} is not running"


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
    serve_lock = hashlib.sha256((ROOT / "requirements/serve.txt").read_bytes()).hexdigest()
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
