"""The Docker engine that builds the images: the user's own whenever its BuildKit is new enough.

    python -m imagetool engine install|start   # use the engine that answers, else engine.sh's
    python -m imagetool engine check           # the engine that answers: usable, or why not (exit 2)
    python -m imagetool engine stop|status|host-tools|binfmt   # engine.sh

Whichever engine answers (``DOCKER_HOST``, the current context, the default socket: Docker CE,
Docker Desktop, rootless Docker, or the one ``make engine`` installed) is used as it is, and nothing
is installed or started beside it, as long as it has what a reproducible build needs:
- BuildKit >= 0.13, the first with ``rewrite-timestamp`` (moby vendors it from Engine 26.0; Debian's
  builds report BuildKit as ``v0.0.0+unknown``, so the engine's version stands in for it);
- the buildx CLI plugin;
- the containerd image store, without which the ``docker`` driver cannot export an OCI tarball.
Only when no engine answers does engine.sh install Debian 13's engine from the store (Debian
hosts) and start it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from imagetool.common import InputError, log

MIN_BUILDKIT = (0, 13)
MIN_ENGINE = (26, 0)  # the first moby release that vendors BuildKit 0.13
MIN_DESKTOP = "4.29"  # the first Docker Desktop with Engine 26.0
SCRIPT = Path(__file__).with_name("engine.sh")
PROBE_TIMEOUT = 20
CONTAINERD_STORE = "io.containerd.snapshotter"
ENABLE_STORE = (
    'enable it (/etc/docker/daemon.json: {"features": {"containerd-snapshotter": true}}; Docker Desktop: '
    'Settings > General > "Use containerd for pulling and storing images") and restart the engine'
)


@dataclass(frozen=True)
class Engine:
    """What the engine that answers says about itself."""

    endpoint: str  # where the CLI reaches it
    context: str  # the CLI context: its docker-driver builder has the same name
    product: str  # "Docker Engine", "Docker Desktop 4.35.1 (173168)", ...
    version: str  # the server's version as reported ("26.1.5+dfsg1")
    components: tuple[str, ...]  # names of the server's components ("Engine", "containerd", ...)
    buildkit: str | None  # as `docker buildx inspect` reports it, when it does
    buildx: str | None  # the CLI plugin's version; None when it is missing
    containerd_store: bool

    @property
    def buildkit_shown(self) -> str:
        """ "BuildKit v0.13.2", or what the engine's version implies when BuildKit does not say."""
        if self.buildkit and reported(self.buildkit):
            return f"BuildKit {self.buildkit}"
        return f"the BuildKit of Engine {self.version}"


def version_tuple(text: str) -> tuple[int, ...] | None:
    """(26, 1, 5) for "26.1.5+dfsg1" or "v26.1.5"; None when it does not start with a number."""
    m = re.match(r"v?(\d+(?:\.\d+)*)", text.strip())
    return tuple(int(part) for part in m.group(1).split(".")) if m else None


def reported(buildkit: str) -> tuple[int, ...] | None:
    """BuildKit's version as it reports it; None for Debian's "v0.0.0+unknown" (or nothing)."""
    found = version_tuple(buildkit)
    return found if found and any(found) else None


def problem(e: Engine) -> str | None:
    """Why ``e`` cannot build the images reproducibly (one line naming its version), or None."""
    where = f"the Docker engine at {e.endpoint}"
    if any("podman" in c.lower() for c in e.components):
        return f"{where} is Podman {e.version}, whose Docker API has no BuildKit: lockstep needs Docker's"
    buildkit = reported(e.buildkit or "")
    engine = version_tuple(e.version)
    # BuildKit's own word when it says its version, else the engine's version for it.
    too_old = buildkit < MIN_BUILDKIT if buildkit else engine is None or engine < MIN_ENGINE
    if too_old:
        return (
            f"{where} is {e.product} {e.version} with {e.buildkit_shown}, older than BuildKit 0.13 "
            f"(Docker Engine {'.'.join(map(str, MIN_ENGINE))}, Docker Desktop {MIN_DESKTOP}), which "
            "reproducible exports need (rewrite-timestamp): upgrade it, or stop it and run `make engine` "
            "on a Debian host to install one from the store"
        )
    if e.buildx is None:
        return f"{where} is usable, but the docker CLI has no buildx plugin (>= 0.13): install docker-buildx"
    if not e.containerd_store:
        return (
            f"{where} ({e.product} {e.version}) does not use the containerd image store, which exports "
            f"OCI tarballs: {ENABLE_STORE}"
        )
    return None


def _docker(*args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def _out(*args: str) -> str | None:
    done = _docker(*args)
    return done.stdout.strip() if done is not None and done.returncode == 0 else None


def probe() -> Engine | None:
    """The engine that answers, or None when none does (or there is no docker CLI)."""
    server = _out("version", "--format", "{{json .Server}}")
    if not server or server == "null":
        return None
    info = json.loads(server)
    context = _out("context", "show") or "default"
    endpoint = os.environ.get("DOCKER_HOST") or _out(
        "context", "inspect", context, "--format", "{{.Endpoints.docker.Host}}"
    )
    buildx = _out("buildx", "version")
    version = str(info.get("Version", "unknown"))
    # An engine too old for BuildKit 0.13 is refused by its version alone: no need to ask BuildKit
    new_enough = (version_tuple(version) or (0,)) >= MIN_ENGINE
    inspect = _out("buildx", "inspect", context) if buildx and new_enough else None
    found = re.search(r"^BuildKit version:\s*(\S+)", inspect or "", re.MULTILINE)
    driver = _out("info", "--format", "{{json .DriverStatus}}") or ""
    return Engine(
        endpoint=endpoint or context,
        context=context,
        product=((info.get("Platform") or {}).get("Name") or "Docker Engine").strip(),
        version=version,
        components=tuple(str(c.get("Name", "")) for c in info.get("Components") or []),
        buildkit=found.group(1) if found else None,
        buildx=buildx.split()[1] if buildx and len(buildx.split()) > 1 else None,
        containerd_store=CONTAINERD_STORE in driver,
    )


NO_ENGINE = "no Docker engine answers: start yours, or run `make engine` (Debian hosts)"


def answering() -> Engine | None:
    """The engine that answers, checked; None when none does. Exit 2 when it answers but is not
    usable, or when DOCKER_HOST names one that does not answer (installing another would not be
    the one asked for)."""
    found = probe()
    if found is None:
        if os.environ.get("DOCKER_HOST"):
            raise InputError(
                f"DOCKER_HOST={os.environ['DOCKER_HOST']}: no Docker engine answers there; start it, "
                "or unset DOCKER_HOST to use (or install) this host's engine"
            )
        return None
    why = problem(found)
    if why:
        raise InputError(why)
    return found


@cache
def require() -> Engine:
    """The usable engine (checked once per process): what every build goes through."""
    found = answering()
    if found is None:
        raise InputError(NO_ENGINE)
    return found


def emulated_platforms() -> list[str]:
    """The platforms the engine's BuildKit can run (`docker buildx inspect`'s list): on hosts that
    are not Linux, the engine runs in a VM whose emulation this host cannot see."""
    inspect = _out("buildx", "inspect", require().context) or ""
    found = re.search(r"^Platforms:\s*(.+)$", inspect, re.MULTILINE)
    return [p.strip() for p in found.group(1).split(",")] if found else []


def _use_answering(verb: str) -> bool:
    """True when a usable engine answers (logged), False when none does."""
    found = answering()
    if found is not None:
        log(
            f"docker-engine: using the engine at {found.endpoint}: {found.product} {found.version}, "
            f"{found.buildkit_shown}, buildx {found.buildx}, containerd image store; nothing to {verb}"
        )
    return found is not None


def run(command: str) -> int:
    """`python -m imagetool engine COMMAND`: the engine that answers when it is usable; else, or for
    a command only the script has, engine.sh (which this process becomes)."""
    if command == "check":
        if not _use_answering("do"):
            raise InputError(NO_ENGINE)
        return 0
    if command in ("install", "start") and _use_answering(command):
        return 0
    # No engine answers (install, start), or a verb only the script has: it starts daemons
    # (setsid, pid files) and runs dpkg/apt-get, which a shell says directly.
    sys.stdout.flush()
    return os.execv("/usr/bin/env", ["env", "bash", str(SCRIPT), command])
