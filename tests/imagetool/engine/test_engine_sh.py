"""`engine.sh stop` kills only the daemons it started: a PID file is trusted only while /proc/PID is
still that program. Run against a log directory of the test's own, so the shared engine is never
touched; the processes are the test's own `sleep`s."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import REPO_ROOT

ENGINE_SH = REPO_ROOT / "imagetool/engine/engine.sh"


@pytest.fixture
def sleepers(tmp_path: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """A `sleep` running as itself, and one running from a copy named `dockerd`."""
    named = tmp_path / "bin/dockerd"
    named.parent.mkdir()
    shutil.copy(shutil.which("sleep") or "/bin/sleep", named)
    procs = {
        "sleep": subprocess.Popen(["sleep", "300"]),
        "dockerd": subprocess.Popen([str(named), "300"]),
    }
    yield procs
    for proc in procs.values():
        proc.kill()
        proc.wait()


def stop(log_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOCKSTEP_DOCKER_LOG_DIR": str(log_dir)}
    return subprocess.run(
        ["bash", str(ENGINE_SH), "stop"], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_stale_pid_file_naming_another_program_kills_nothing(
    tmp_path: Path, sleepers: dict[str, subprocess.Popen[bytes]]
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "dockerd.pid").write_text(f"{sleepers['sleep'].pid}\n")  # reused by an unrelated process
    done = stop(logs)
    assert done.returncode == 0, done.stderr
    assert sleepers["sleep"].poll() is None, "an unrelated process was killed"
    assert f"PID {sleepers['sleep'].pid} is sleep, not dockerd; left running" in done.stderr
    assert not (logs / "dockerd.pid").exists()


def test_a_pid_file_naming_its_own_program_is_stopped(
    tmp_path: Path, sleepers: dict[str, subprocess.Popen[bytes]]
) -> None:
    """The control: the same check lets `stop` end a process that is the daemon it names."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "dockerd.pid").write_text(f"{sleepers['dockerd'].pid}\n")
    done = stop(logs)
    assert done.returncode == 0, done.stderr
    assert sleepers["dockerd"].wait(timeout=15) != 0
    assert f"stopped dockerd ({sleepers['dockerd'].pid})" in done.stderr
    assert sleepers["sleep"].poll() is None


@pytest.mark.parametrize("content", ["", "not-a-pid\n", "-1\n", "0\n"])
def test_a_malformed_pid_file_kills_nothing(tmp_path: Path, content: str) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "dockerd.pid").write_text(content)
    done = stop(logs)
    assert done.returncode == 0, done.stderr
    assert not (logs / "dockerd.pid").exists()
