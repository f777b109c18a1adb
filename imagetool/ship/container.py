"""Start the image hardened, as `make run` does, and wait until the service is ready."""

from __future__ import annotations

import shlex
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from imagetool.common import ROOT

# `make run`'s caps, as deploy/ sets them (tests keep compose, the manifests and KServe in step).
# Memory: 2x the 168 MiB request, itself 1.5x the bench's measured RSS; swap off so the limit is real.
RUN_MEMORY = "336m"
# One worker and its runtime threads need ~20; the cap stops a fork or thread bomb.
RUN_PIDS = 128


def hardened_flags(memory: str = RUN_MEMORY, pids: int = RUN_PIDS) -> tuple[str, ...]:
    """Read-only root, no capabilities, no new privileges, a numeric non-root user, memory and pids
    caps: how `make run` (run_command), the image tests and the bench start the image."""
    return (
        "--init=false",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,noexec,nosuid,size=16m",
        "--cap-drop=ALL",
        "--security-opt",
        "no-new-privileges",
        "--user",
        "10001:10001",
        "--memory",
        memory,
        "--memory-swap",
        memory,
        "--pids-limit",
        str(pids),
    )


HARDENED_FLAGS = hardened_flags()


def platform_flags(platform: str) -> tuple[str, ...]:
    """linux/arm64 runs emulated: the tmpfs hides the x86 host's CPU topology, which onnxruntime's
    cpuinfo cannot parse as an aarch64 one (it aborts at import). Natively: none."""
    if platform == "linux/arm64":
        return ("--platform", "linux/arm64", "--tmpfs", "/sys/devices/system/cpu:ro")
    return ()


def run_command(
    name: str, port: int, tag: str, platform: str = "", memory: str = RUN_MEMORY, pids: int = RUN_PIDS
) -> list[str]:
    """`make run`'s `docker run`: hardened, on 127.0.0.1:`port`, removed when it stops."""
    flags = [*hardened_flags(memory, pids), *platform_flags(platform)]
    return ["docker", "run", "--rm", "--name", name, *flags, "-p", f"127.0.0.1:{port}:8000", tag]


def make(root: Path, *args: str) -> list[str]:
    """A quiet `make` in ``root`` whose output is only the recipe's, also when run under make."""
    return ["make", "-s", "--no-print-directory", "-C", str(root), *args]


def make_variables(name: str, port: int, tag: str) -> list[str]:
    return [f"RUN_NAME={name}", f"RUN_PORT={port}", f"IMAGE_TAG={tag}"]


def make_run_command(name: str, port: int, tag: str, root: Path = ROOT, *variables: str) -> list[str]:
    """The `docker run` command `make run` would execute, as arguments: its recipe (``make -n``),
    asked to print the command rather than run it."""
    recipe = subprocess.run(
        make(root, "-n", "run", *make_variables(name, port, tag), *variables),
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    command = [*shlex.split(recipe.replace("\\\n", " ")), "--print"]
    out = subprocess.run(command, cwd=root, capture_output=True, text=True, check=True)
    return shlex.split(out.stdout)


@dataclass(frozen=True)
class Container:
    id: str
    url: str
    ready_seconds: float  # from `docker run` to the first 200 from /readyz


def wait_ready(
    url: str,
    cid: str,
    timeout: float = 30.0,
    starter: subprocess.Popen[bytes] | None = None,
    starter_output: IO[str] | None = None,
) -> float:
    """Poll /readyz until it answers 200; returns the monotonic time it did. Fails at once if
    ``starter`` (the process running the container, its output in ``starter_output``) ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if starter is not None and starter.poll() is not None:
            said = ""
            if starter_output is not None:
                starter_output.seek(0)
                said = starter_output.read()[-2000:]
            raise RuntimeError(f"{starter.args!r} exited ({starter.returncode}):\n{said}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as reply:
                if reply.status == 200:
                    return time.monotonic()
        except OSError:
            time.sleep(0.01)
    logs = subprocess.run(["docker", "logs", cid], capture_output=True, text=True, check=False)
    raise TimeoutError(f"container not ready within {timeout}s:\n{logs.stdout}\n{logs.stderr}")


@contextmanager
def hardened_container(tag: str, timeout: float = 30.0) -> Iterator[Container]:
    """Run `tag` hardened on a free loopback port; removed again on exit."""
    started = time.monotonic()
    cid = subprocess.run(
        ["docker", "run", "-d", *HARDENED_FLAGS, "-p", "127.0.0.1::8000", tag],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    try:
        mapping = subprocess.run(
            ["docker", "port", cid, "8000/tcp"], capture_output=True, text=True, check=True
        ).stdout
        url = f"http://127.0.0.1:{mapping.split(':')[-1].strip()}"
        ready = wait_ready(url, cid, timeout)
        yield Container(cid, url, ready - started)
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, check=False)


@contextmanager
def made_run(
    tag: str, name: str, port: int, root: Path = ROOT, timeout: float = 30.0, platform: str = ""
) -> Iterator[Container]:
    """`make run` itself (its recipe, RUN_NAME/RUN_PORT/IMAGE_TAG and PLATFORM overridden), until
    ready; stopped with `make stop` on exit."""
    started = time.monotonic()
    cmd = make(root, "run", *make_variables(name, port, tag), *([f"PLATFORM={platform}"] if platform else []))
    # The container's log goes to a file: a pipe nobody reads would fill and stall it.
    with tempfile.TemporaryFile("w+") as output, subprocess.Popen(cmd, stdout=output, stderr=output) as proc:
        try:
            ready = wait_ready(f"http://127.0.0.1:{port}", name, timeout, proc, output)
            yield Container(name, f"http://127.0.0.1:{port}", ready - started)
        finally:
            stop = make(root, "stop", f"RUN_NAME={name}")
            subprocess.run(stop, capture_output=True, check=False)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
                proc.wait(timeout=30)
