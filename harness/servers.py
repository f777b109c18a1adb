"""A free loopback port, and a server started with its output in files and waited for until it
answers (`python -m api`, or any command), for tests and benchmarks alike."""

from __future__ import annotations

import os
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
from typing import Protocol

from harness.repo import REPO_ROOT


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
    """What `running_server` needs of a model's artifacts (harness.artifacts.Artifacts)."""

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
