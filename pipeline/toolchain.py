"""Where a stage runs: in the locked training toolchain (the default), or on this host for debugging.

`python -m pipeline STAGE` on the host starts

    docker run --rm --network=none --read-only --user UID:GID -v CWD:CWD -w CWD \\
        <image/toolchain.lock.json's digest> python -m pipeline STAGE

so the interpreter, glibc/libm and every library come from the lock, not from the host (the
toolchain is built by `make toolchain`, imagetool/images/toolchain.py). Inside, the image sets
LOCKSTEP_TRAIN=container and the stage runs in that process. The working directory is mounted at
its own path (a `dvc exp run --temp/--queue` copy included), and nothing else from the host goes in
but the CPU-simulation variables in PASSED_ENV. Outputs belong to the invoking user.

LOCKSTEP_TRAIN=host runs the stage on the host's Python instead, saying on every run that its bits
may differ from the lock. Anything that stops the toolchain (no Docker, an old engine, the locked
image missing) is one line and exit status 2: never a silent fallback to the host.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MODE_ENV = "LOCKSTEP_TRAIN"
MODES = ("toolchain", "host")  # what a user may set; "container" is the image's own marker
IN_IMAGE = "container"
TOOLCHAIN_PREFIX = "/opt/venv"  # the toolchain's venv (image/toolchain.Dockerfile)
# Read by the libraries when the process starts (numpy's SIMD dispatch, glibc's ifuncs): passed in
# so a simulated CPU level applies inside the container as on the host.
PASSED_ENV = ("NPY_DISABLE_CPU_FEATURES", "GLIBC_TUNABLES")


class ToolchainUnavailableError(Exception):
    """The toolchain cannot run this stage: the message is one line saying what to do."""


def docker_command(stage: str, digest: str, cwd: Path, env: dict[str, str]) -> list[str]:
    workdir = str(cwd)
    cmd = ["docker", "run", "--rm", "--network=none", "--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev"]
    cmd += ["--cap-drop=ALL", "--security-opt", "no-new-privileges"]
    cmd += ["--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp"]
    cmd += ["-v", f"{workdir}:{workdir}", "-w", workdir]
    for name in PASSED_ENV:
        if name in env:
            cmd += ["-e", f"{name}={env[name]}"]
    return [*cmd, digest, "python", "-m", "pipeline", stage]


def check_toolchain(cwd: Path) -> str:
    """The locked toolchain's digest, once the engine answers and holds exactly that image."""
    from imagetool.common import ToolError
    from imagetool.images import toolchain

    if problem := toolchain.engine_problem():
        raise ToolchainUnavailableError(problem)
    try:
        digest = toolchain.locked_digest(cwd)
    except ToolError as e:
        raise ToolchainUnavailableError(str(e)) from None
    if toolchain.image_id(digest) == digest:
        return digest
    latest = toolchain.image_id(f"{toolchain.REPOSITORY}:latest")
    other = f" ({toolchain.REPOSITORY}:latest is {latest}, not the locked one)" if latest else ""
    raise ToolchainUnavailableError(
        f"the training toolchain {digest} (image/toolchain.lock.json) is not in the Docker engine{other}: "
        "run `make toolchain` (builds it offline from the store; it names any input that differs)"
    )


def dispatch(stage: str, env: dict[str, str] | None = None) -> int | None:
    """None: run the stage in this process. Otherwise the stage ran in the toolchain (or could not
    start) and this is the exit status to return."""
    env = dict(os.environ if env is None else env)
    mode = env.get(MODE_ENV, "toolchain")
    if mode == IN_IMAGE:
        if sys.prefix != TOOLCHAIN_PREFIX:
            print(f"error: {MODE_ENV}=container is the toolchain's own; use one of {MODES}", file=sys.stderr)
            return 2
        return None
    if mode == "host":
        print(
            f"warning: {MODE_ENV}=host: stage {stage} runs on this host's Python {sys.version.split()[0]}, "
            "not in the locked toolchain; its outputs may differ from dvc.lock",
            file=sys.stderr,
        )
        return None
    if mode != "toolchain":
        print(f"error: {MODE_ENV}={mode!r} is not one of {MODES} (unset means toolchain)", file=sys.stderr)
        return 2
    cwd = Path.cwd()
    try:
        digest = check_toolchain(cwd)
    except ToolchainUnavailableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return subprocess.run(docker_command(stage, digest, cwd, env), check=False).returncode
