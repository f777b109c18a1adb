"""Plain helpers shared by every test level and by bench/: the repository root, a fresh-clone-like
copy of it, stage outputs as dvc.lock records them, a free loopback port, and a server started with
its output in files and waited for until it answers. Fixtures live in tests/conftest.py."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
# What a fresh clone would not have (paths from the repo root, and names anywhere).
_NOT_SOURCE_PATHS = {".venv", "build", ".git", ".dvc/cache", ".dvc/tmp", "store"}  # store/: DVC-tracked
_OUTPUT_PATHS = {"data/prepared", "models"}  # DVC outputs: made by `dvc repro`, git-ignored
_NOT_SOURCE_NAMES = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
# The image's input store (tests/image/test_offline_store.py): a fresh clone has store.dvc, but
# without `dvc pull` DVC reports the store as not in the cache, so copies that exercise the
# pipeline's DVC commands (status, push, pull of the whole project) leave it out unless asked.
_STORE_DVC = "store.dvc"


def copy_repo(dest: Path, *, with_outputs: bool = False, with_store: bool = False) -> Path:
    """Copy the repo as a fresh clone would have it, plus the DVC outputs if `with_outputs`, and
    the image store's DVC file if `with_store`."""
    skip = _NOT_SOURCE_PATHS if with_outputs else _NOT_SOURCE_PATHS | _OUTPUT_PATHS
    if not with_store:
        skip = skip | {_STORE_DVC}

    def ignore(directory: str, names: list[str]) -> set[str]:
        rel = Path(directory).relative_to(REPO_ROOT)
        return {n for n in names if n in _NOT_SOURCE_NAMES or (rel / n).as_posix() in skip}

    shutil.copytree(REPO_ROOT, dest, ignore=ignore)
    return dest


def pipeline_workdir(dest: Path, *, data: str = "data/raw") -> Path:
    """The pipeline and the contract (their own copies), params.yaml, the toolchain lock (which
    image the stages run in) and one data folder in `dest`: enough to run `python -m pipeline STAGE`
    there without DVC."""
    for part in ("pipeline", "contract", data):
        shutil.copytree(REPO_ROOT / part, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("params.yaml", "image/toolchain.lock.json"):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / name, dest / name)
    return dest


def dated_csv(rows: int = 300, seed: int = 0) -> str:
    """A CSV with a `date` column (ISO 8601: dates, date-times, UTC offsets, a few gaps), a number,
    a category and a label that depends on the weekday and the month, so the date's parts matter."""
    import random
    from datetime import datetime, timedelta

    rng = random.Random(seed)
    start = datetime(2023, 1, 1)
    lines = ["visited,temperature,station,busy"]
    for i in range(rows):
        moment = start + timedelta(days=rng.randrange(730), minutes=rng.randrange(24 * 60))
        shape = i % 4
        when = (
            moment.date().isoformat()
            if shape == 0
            else moment.isoformat(timespec="minutes")
            if shape == 1
            else moment.isoformat() + "Z"
            if shape == 2
            else moment.isoformat(sep=" ") + "+02:00"
        )
        if i % 23 == 5:
            when = ""  # a gap
        busy = moment.weekday() >= 5 or moment.month in (7, 8) or rng.random() < 0.1
        temperature = round(rng.gauss(15 + 10 * (moment.month in (6, 7, 8)), 4), 2)
        lines.append(f"{when},{temperature},{rng.choice('abc')},{'yes' if busy else 'no'}")
    return "\n".join(lines) + "\n"


def stage_outputs(stage: str) -> list[str]:
    """The files dvc.yaml declares as `stage`'s outputs (outs, metrics and plots)."""
    declared = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"][stage]
    entries = [e for key in ("outs", "metrics", "plots") for e in declared.get(key, [])]
    return [e if isinstance(e, str) else next(iter(e)) for e in entries]


def lock_stage_outputs(workdir: Path, stage: str) -> None:
    """Record `stage`'s outputs in workdir/dvc.lock from their real bytes, as `dvc repro` does
    after each stage: tests that run stages without DVC give the next stage the lock entry its
    md5 check (contract.load_verified_pickle) needs, instead of skipping that check."""
    lock_file = workdir / "dvc.lock"
    lock: dict[str, Any] = (
        yaml.safe_load(lock_file.read_text()) if lock_file.exists() else {"schema": "2.0", "stages": {}}
    )
    outs = []
    for path in stage_outputs(stage):
        data = (workdir / path).read_bytes()
        outs.append({"path": path, "hash": "md5", "md5": hashlib.md5(data).hexdigest(), "size": len(data)})
    lock["stages"][stage] = {"cmd": f"python -m pipeline {stage}", "outs": outs}
    lock_file.write_text(yaml.safe_dump(lock, sort_keys=False))


class _OpensAFile:
    """Unpickling this calls open(path, "w"): a stand-in for code a poisoned pickle would run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.path), "w")


def malicious_pickle(marker: Path) -> bytes:
    """A pickle whose loading creates `marker`: if the file exists, the payload ran."""
    return pickle.dumps(_OpensAFile(marker))


def venv_bin(name: str) -> str:
    """A console script installed beside the running interpreter (dvc, pip-compile, ...)."""
    return str(Path(sys.executable).with_name(name))


def venv_env(**extra: str) -> dict[str, str]:
    """This environment with the running interpreter's bin first on PATH: dvc.yaml's commands
    run `python`, which must be this venv's, with the locked libraries."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {**os.environ, "PATH": path, **extra}


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class NotReadyError(AssertionError):
    """A server exited, or did not answer its readiness URL in time."""


def _tail(path: Path | None, lines: int = 20) -> str:
    if path is None or not path.is_file():
        return ""
    return "\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_ready(
    url: str,
    process: subprocess.Popen[bytes] | None = None,
    *,
    timeout: float = 60.0,
    ready: Collection[int] = (200,),
    log: Path | None = None,
) -> float:
    """Seconds until GET `url` answers with a status in `ready`. Raises NotReadyError, with the last
    lines of `log`, if `process` exits first or `timeout` passes."""
    started = time.monotonic()
    while True:
        if process is not None and process.poll() is not None:
            raise NotReadyError(f"{url}: the server exited with {process.returncode} first{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                last: object = reply.status
        except urllib.error.HTTPError as exc:  # before OSError, its base: an answer, if not a 2xx
            last = exc.code
        except OSError as exc:
            last = exc
        if last in ready:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise NotReadyError(f"{url} not ready after {timeout:g} s (last: {last}){_tail(log)}")
        time.sleep(0.05)


@dataclass(frozen=True)
class Server:
    """A started server process; its stdout and stderr go to files, never to a pipe (a pipe nobody
    reads fills up at about 64 kB, and a server that logs more then blocks)."""

    process: subprocess.Popen[bytes]
    port: int
    startup_seconds: float
    stdout: Path
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self, timeout: float = 30.0) -> bytes:
        """Everything the server wrote to stdout, once it has exited."""
        self.process.wait(timeout=timeout)
        return self.stdout.read_bytes()


@contextmanager
def serving(
    command: Sequence[str],
    port: int,
    ready_path: str,
    *,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    timeout: float = 60.0,
    ready: Collection[int] = (200,),
    cwd: Path = REPO_ROOT,
) -> Iterator[Server]:
    """Run `command` (a server on `port`) until GET `ready_path` answers; stop it on exit (SIGTERM,
    then SIGKILL after 30 s). Its stdout goes to `log` and its stderr to `log` + ".stderr" (in a
    temporary folder when `log` is None)."""
    with tempfile.TemporaryDirectory(prefix="lockstep-server-") as scratch:
        stdout_path = log if log is not None else Path(scratch) / "server.log"
        stderr_path = stdout_path.with_name(stdout_path.name + ".stderr")
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            started = time.monotonic()
            process = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=out, stderr=err)
        try:
            url = f"http://127.0.0.1:{port}{ready_path}"
            wait_ready(url, process, timeout=timeout, ready=ready, log=stderr_path)
            yield Server(process, port, time.monotonic() - started, stdout_path, stderr_path)
        finally:
            if process.poll() is None:
                process.terminate()  # not kill: uvicorn stops its worker processes on SIGTERM
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


class ServedArtifacts(Protocol):
    """What `running_server` needs of a model's artifacts (tests.api.support.Artifacts)."""

    def env(self) -> dict[str, str]: ...


@contextmanager
def running_server(
    artifacts: ServedArtifacts, *, module: str = "api", log: Path | None = None, **env: str
) -> Iterator[Server]:
    """A real `python -m api` (or `module`, a variant of it) on a free loopback port, serving the
    given artifacts with the LOCKSTEP_* variables in `env` on top, until GET /readyz answers 200."""
    port = free_port()
    full_env = {**os.environ, **artifacts.env(), **env, "LOCKSTEP_PORT": str(port)}
    with serving([sys.executable, "-m", module], port, "/readyz", env=full_env, log=log) as server:
        yield server
