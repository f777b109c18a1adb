"""The training toolchain: it rebuilds to its locked digest, stages run in it as the invoking user
with no network, DVC's workflows run through it, host mode gives the same bits (or says so), and
every way it cannot run is one line and exit status 2 (imagetool/images/toolchain.py, pipeline/toolchain.py).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from contract import locked_outs, parse_dvc_lock
from harness import REPO_ROOT as ROOT
from harness import copy_repo, pipeline_workdir, venv_bin, venv_env
from imagetool.images import image, toolchain
from pipeline import toolchain as launcher

pytestmark = [pytest.mark.slow, pytest.mark.docker]

NOBODY = 1234  # a uid and gid no file of the repo belongs to


def _run(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, env=venv_env(**env), capture_output=True, text=True, check=False, timeout=600
    )


def stage(cwd: Path, name: str, **env: str) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-m", "pipeline", name], cwd, **env)


def dvc(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    proc = _run([venv_bin("dvc"), *args], cwd, **env)
    assert proc.returncode == 0, f"dvc {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
    return proc


def outs(lock: Path) -> dict[str, str]:
    return locked_outs(parse_dvc_lock(lock.read_bytes(), lock))


@pytest.fixture(scope="session")
def locked_toolchain(engine: None, built_inputs: None) -> str:
    """The locked toolchain in the engine (`make toolchain`: cached, or built from the store)."""
    proc = _run([sys.executable, "-m", "imagetool", "toolchain", "ensure"], ROOT)
    assert proc.returncode == 0, proc.stderr
    return toolchain.locked_digest()


@pytest.fixture
def git_copy(tmp_path: Path, locked_toolchain: str) -> Callable[..., Path]:
    """Factory: a committed git copy of the repo with its model (DVC experiments need commits)."""

    def make(parent: Path = tmp_path) -> Path:
        dest = copy_repo(parent / f"repo{len(list(parent.iterdir()))}", with_outputs=True)
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"]):
            subprocess.run(cmd, cwd=dest, check=True)
        commit = ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm", "copy"]
        subprocess.run(commit, cwd=dest, check=True)
        return dest

    return make


# --- the image ---------------------------------------------------------------------------------


def test_a_no_cache_rebuild_gives_the_locked_digest(locked_toolchain: str) -> None:
    """`make toolchain` built (or found) the lock's digest; a --no-cache rebuild from the same
    store gives it again: two builds, one digest, equal to image/toolchain.lock.json."""
    assert toolchain.image_id(locked_toolchain) == locked_toolchain
    proc = _run([sys.executable, "-m", "imagetool", "toolchain", "verify"], ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == locked_toolchain


def test_the_lock_records_the_tree_inputs(locked_toolchain: str) -> None:
    proc = _run([sys.executable, "-m", "imagetool", "toolchain", "check"], ROOT)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((ROOT / "image/toolchain.lock.json").read_text())["digest"] == locked_toolchain


def test_the_service_image_does_not_see_the_toolchain() -> None:
    """The toolchain's recipe, lock and context are no input of the service image: its hashed
    sources name none of them, and its .dockerignore allow-list lets none of them in."""
    assert not [f for f in image.source_files(ROOT) if "toolchain" in f]
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # an allow-list: what it does not name stays out
    assert not [line for line in ignore if "toolchain" in line]
    assert not [f for f in image.REQUIRED_FILES if "toolchain" in f]


# --- stages in the container -------------------------------------------------------------------


@pytest.fixture
def world_readable_tmp() -> Iterator[Path]:
    """A directory another uid can reach (pytest's own tmp_path is private to root), and the dev
    venv and the checkout reachable by it too: a clone under a 0700 directory (mktemp -d, a home)
    is not, so the parents that lack it get o+x for the test and their modes back afterwards."""
    venv = Path(sys.prefix)
    modes = {p: p.stat().st_mode for p in (venv, *venv.parents) if not p.stat().st_mode & stat.S_IXOTH}
    try:
        for p, mode in modes.items():
            p.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
        with tempfile.TemporaryDirectory(prefix="toolchain-uid-") as tmp:
            Path(tmp).chmod(0o755)
            yield Path(tmp)
    finally:
        for p, mode in modes.items():
            p.chmod(stat.S_IMODE(mode))


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root (CI runs as root)")
def test_a_stage_runs_as_the_invoking_user(world_readable_tmp: Path, locked_toolchain: str) -> None:
    """A non-root user runs `python -m pipeline prepare`: the outputs are that user's, not root's."""
    work = pipeline_workdir(world_readable_tmp / "work")
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(work)], check=True)
    socket_gid = Path("/var/run/docker.sock").stat().st_gid  # the docker group: the user may use the engine
    as_user = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", f"--groups={socket_gid}"]
    proc = _run([*as_user, sys.executable, "-m", "pipeline", "prepare"], work, HOME=str(work))
    assert proc.returncode == 0, proc.stderr
    made = list((work / "data/prepared").iterdir())
    assert {p.name for p in made} == {"train.csv", "test.csv", "schema.json"}
    for path in made:
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY), f"{path} belongs to {st.st_uid}:{st.st_gid}"
        assert not stat.S_ISLNK(st.st_mode)


def test_the_container_has_no_network(tmp_path: Path, locked_toolchain: str) -> None:
    """The launcher's own `docker run` line, with a probe in place of the stage: only a loopback
    interface, and a connect to a documentation address (TEST-NET-1) fails at once, sending nothing."""
    cmd = launcher.docker_command("prepare", locked_toolchain, tmp_path, {})
    assert cmd[-5:] == [locked_toolchain, "python", "-m", "pipeline", "prepare"]
    probe = (
        "import socket\n"
        "names = [l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]]\n"
        "print(','.join(names))\n"
        "try:\n"
        "    socket.create_connection(('192.0.2.1', 9), timeout=5)\n"
        "    print('connected')\n"
        "except OSError as e:\n"
        "    print('refused', e.errno)\n"
    )
    image_at = cmd.index(locked_toolchain)
    proc = subprocess.run([*cmd[: image_at + 1], "python", "-c", probe], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    interfaces, outcome = proc.stdout.split()[:2]
    assert interfaces == "lo"
    assert outcome == "refused"


def test_the_stage_sees_no_host_environment_but_the_cpu_switches(tmp_path: Path) -> None:
    env = {"NPY_DISABLE_CPU_FEATURES": "X86_V4", "SECRET_TOKEN": "x", "LOCKSTEP_TRAIN": "toolchain"}
    cmd = launcher.docker_command("train", "sha256:" + "0" * 64, tmp_path, env)
    passed = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "-e"]
    assert passed == ["HOME=/tmp", "NPY_DISABLE_CPU_FEATURES=X86_V4"]
    assert cmd[-3:] == ["-m", "pipeline", "train"]
    assert ["-v", f"{tmp_path}:{tmp_path}"] == cmd[cmd.index("-v") : cmd.index("-v") + 2]


# --- DVC through the toolchain -----------------------------------------------------------------


def test_dvc_repro_in_the_toolchain_reproduces_the_lock(git_copy: Callable[..., Path]) -> None:
    repo = git_copy()
    proc = dvc(repo, "repro", "-f")
    assert "LOCKSTEP_TRAIN=host" not in proc.stderr  # toolchain mode says nothing extra
    assert outs(repo / "dvc.lock") == outs(ROOT / "dvc.lock")


def test_host_mode_gives_the_toolchains_bits_and_says_it_may_not(git_copy: Callable[..., Path]) -> None:
    """Host mode against toolchain mode on one host. Before every dispatcher is pinned, the bits
    agree where this host's CPU and the toolchain's libraries agree (they did here); each host-mode
    stage says, on stderr, that its bits may differ."""
    repo = git_copy()
    proc = dvc(repo, "repro", "-f", LOCKSTEP_TRAIN="host")
    warnings = [line for line in proc.stderr.splitlines() if "LOCKSTEP_TRAIN=host" in line]
    assert len(warnings) == 4, proc.stderr  # one per stage
    assert outs(repo / "dvc.lock") == outs(ROOT / "dvc.lock")


def test_dvc_experiments_run_in_the_toolchain(git_copy: Callable[..., Path]) -> None:
    """`dvc exp run -S`, and `--queue` + `dvc queue start` (a temporary copy of the workspace,
    mounted at its own path), then `dvc exp show`."""
    repo = git_copy()
    dvc(repo, "exp", "run", "-n", "toolchain-c05", "-S", "train.estimator.params.C=0.5")
    assert outs(repo / "dvc.lock")["models/model.joblib"] != outs(ROOT / "dvc.lock")["models/model.joblib"]
    dvc(repo, "exp", "run", "--queue", "-n", "toolchain-c02", "-S", "train.estimator.params.C=0.25")
    dvc(repo, "queue", "start", "-j", "1")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = dvc(repo, "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    assert "Success" in status, status
    shown = json.loads(dvc(repo, "exp", "show", "--json").stdout)
    names = {exp.get("name") for commit in shown for exp in commit.get("experiments") or []}
    assert {"toolchain-c05", "toolchain-c02"} <= names, names


# --- bad input: one line, exit 2 ---------------------------------------------------------------


def one_error_line(proc: subprocess.CompletedProcess[str], *words: str, alone: bool = True) -> str:
    """The one `error:` line, last on stderr, holding ``words``; with ``alone``, nothing before it
    (a build's own progress lines may come first)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], proc.stderr
    assert len(lines) == 1 or not alone, proc.stderr
    for word in words:
        assert word in lines[-1], lines[-1]
    assert "Traceback" not in proc.stderr
    return lines[-1]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return pipeline_workdir(tmp_path / "work")


def test_docker_missing(workdir: Path) -> None:
    proc = stage(workdir, "prepare", PATH=str(Path(sys.executable).parent))  # the venv only: no docker
    one_error_line(proc, "docker: not found", "Docker Engine >= 26.0")
    assert not (workdir / "data/prepared").exists()


def test_engine_not_answering(workdir: Path) -> None:
    proc = stage(workdir, "prepare", DOCKER_HOST=f"unix://{workdir}/no-engine.sock")
    one_error_line(proc, "no Docker engine answers", "make engine")


def test_engine_too_old(workdir: Path, tmp_path: Path) -> None:
    """A docker CLI whose engine reports 20.10 (Debian 12's own docker.io: BuildKit without
    rewrite-timestamp). Only `docker version` is answered: nothing may run past the check."""
    fake = tmp_path / "bin/docker"
    fake.parent.mkdir()
    fake.write_text(
        '#!/bin/sh\n[ "$1" = version ] && echo \'{"Version":"20.10.24+dfsg1"}\' && exit 0\nexit 99\n'
    )
    fake.chmod(0o755)
    proc = stage(workdir, "prepare", PATH=f"{fake.parent}:{os.environ['PATH']}")
    one_error_line(proc, "Docker Engine 20.10.24+dfsg1 is too old", "BuildKit >= 0.13")


def test_toolchain_image_not_in_the_engine(workdir: Path, locked_toolchain: str) -> None:
    lock = workdir / "image/toolchain.lock.json"
    data = json.loads(lock.read_text())
    data["digest"] = "sha256:" + "ab" * 32  # well-formed, never built
    lock.write_text(json.dumps(data))
    proc = stage(workdir, "train")
    one_error_line(proc, "sha256:" + "ab" * 32, "not in the Docker engine", "make toolchain")


@pytest.mark.parametrize(
    ("mode", "says"), [("hots", "'hots' is not one of"), ("container", "toolchain's own")]
)
def test_bad_mode_setting(workdir: Path, mode: str, says: str) -> None:
    one_error_line(stage(workdir, "prepare", LOCKSTEP_TRAIN=mode), "LOCKSTEP_TRAIN", says)


@pytest.fixture
def build_copy(git_copy: Callable[..., Path]) -> Path:
    """A repo copy that can build the toolchain: the base rootfs and the store's wheels, hard-linked."""
    repo = git_copy()
    (repo / "build/base").mkdir(parents=True)
    os.link(ROOT / "build/base/rootfs.tar", repo / "build/base/rootfs.tar")
    shutil.copy(ROOT / "store.dvc", repo / "store.dvc")
    (repo / "store/wheels").mkdir(parents=True)
    for whl in (ROOT / "store/wheels").glob("*.whl"):
        os.link(whl, repo / "store/wheels" / whl.name)
    return repo


def test_a_digest_other_than_the_lock(build_copy: Path, locked_toolchain: str) -> None:
    lock = build_copy / "image/toolchain.lock.json"
    data = json.loads(lock.read_text())
    data["digest"] = "sha256:" + "cd" * 32
    lock.write_text(json.dumps(data))
    proc = _run([sys.executable, "-m", "imagetool", "toolchain", "build"], build_copy)
    words = (f"builds to {locked_toolchain}", "sha256:" + "cd" * 32, "make lock-toolchain")
    line = one_error_line(proc, *words, alone=False)
    assert "all inputs are equal" in line


def test_not_buildable_offline(build_copy: Path) -> None:
    """A wheel missing from the store, no DVC remote, the network refused: exit 2 naming it."""
    [gone] = (build_copy / "store/wheels").glob("skl2onnx-*.whl")
    gone.unlink()
    shutil.rmtree(build_copy / "build/toolchain", ignore_errors=True)
    proc = _run([sys.executable, "-m", "imagetool", "toolchain", "build"], build_copy, LOCKSTEP_OFFLINE="1")
    one_error_line(proc, "cannot be built offline from the store", "LOCKSTEP_OFFLINE is set", alone=False)


def test_dvc_yaml_keeps_python_m_pipeline() -> None:
    """`dvc exp run -S` and `--queue` rely on the stage command staying `python -m pipeline STAGE`."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, spec in stages.items():
        assert spec["cmd"] == f"python -m pipeline {name}"
        assert "image/toolchain.lock.json" in spec["deps"]
