"""A second, newer BuildKit, run beside the system engine, to prove the digest does not depend on it.

    python -m imagetool second-builder verify   # --no-cache build with it; must equal image.lock

The engine of ``[second_builder]`` in image/engine.toml (Debian unstable's docker.io, docker-cli,
docker-buildx and containerd) is never installed: its .debs, from the store, are unpacked with
``dpkg -x`` into build/second-builder/root, and its containerd and dockerd run from there on their
own sockets, data and exec roots, each in a network namespace of its own. No bridge or iptables:
the build runs with --network=none. The
host's runc runs the build steps. Everything stops when the build is done.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from imagetool.common import BUILD, ROOT, ToolError, file_digest, log, rel
from imagetool.images import image
from imagetool.images.image_lock import IMAGE_LOCK, ImageLock
from imagetool.inputs import fetch, store
from imagetool.platforms import AMD64

HOME = BUILD / "second-builder"
UNPACKED = HOME / "root"
START_TIMEOUT = 60


def deb_contents(deb: Path) -> dict[str, str]:
    """sha256 of every regular file a .deb installs (path relative to the root -> hex), read from
    its data archive (`dpkg-deb --fsys-tarfile`)."""
    done = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=False)
    if done.returncode != 0:
        raise ToolError(f"dpkg-deb --fsys-tarfile {deb.name} failed: {done.stderr.decode(errors='replace')}")
    sums = {}
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        for member in tar:
            data = tar.extractfile(member) if member.isreg() else None
            if data is not None:
                sums[member.name.removeprefix("./")] = hashlib.sha256(data.read()).hexdigest()
    return sums


def tree_differences(root: Path, expected: dict[str, str]) -> list[str]:
    """Files under `root` that are missing or whose sha256 is not the .debs' (each named)."""
    problems = []
    for name, want in sorted(expected.items()):
        path = root / name
        if path.is_symlink() or not path.is_file():
            problems.append(f"{name}: missing")
        elif (got := file_digest(path)) != want:
            problems.append(f"{name}: sha256 {got}, the .deb has {want}")
    return problems


def unpack() -> Path:
    """The second builder's .debs, from checked private copies of the store's, unpacked (dpkg -x)
    into build/second-builder/root, and every file of it verified against the .debs' own contents
    on every use (not on the word of a stamp): a changed binary is named and unpacked again."""
    fetch.ensure(["builder2"], quiet=True)
    files = store.StoreLock.read().files
    debs = sorted(n for n in files if n.startswith("builder2/debs/"))
    with store.verified_copies(debs, files) as copies:
        expected: dict[str, str] = {}
        for copy in copies:
            expected.update(deb_contents(copy))
        changed = tree_differences(UNPACKED, expected)
        if not changed:
            return UNPACKED
        if UNPACKED.exists():
            shown = "; ".join(changed[:5]) + (f"; and {len(changed) - 5} more" if len(changed) > 5 else "")
            log(f"second builder: {rel(UNPACKED)} differs from its .debs ({shown}): unpacking again")
        shutil.rmtree(UNPACKED, ignore_errors=True)
        UNPACKED.mkdir(parents=True)
        for copy in copies:
            subprocess.run(["dpkg", "-x", str(copy), str(UNPACKED)], check=True)
    still = tree_differences(UNPACKED, expected)
    if still:
        raise ToolError(f"second builder: {rel(UNPACKED)} differs from its .debs after unpacking: {still[0]}")
    (HOME / "unpacked.json").unlink(missing_ok=True)  # the stamp earlier versions trusted
    return UNPACKED


def _wait(ready: Callable[[], bool], what: str, proc: subprocess.Popen[bytes], log_file: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
            raise ToolError(f"{what} exited ({proc.returncode}); {rel(log_file)}:\n{tail}")
        time.sleep(0.3)
    raise ToolError(f"{what} did not answer within {START_TIMEOUT}s; see {rel(log_file)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def running() -> Iterator[dict[str, str]]:
    """Start the second builder; yields the environment (DOCKER_HOST, PATH, ...) that selects it."""
    root = unpack()
    HOME.mkdir(parents=True, exist_ok=True)
    # Sockets live in a short private directory under /run (unix socket paths are limited to 108).
    run_dir = Path(
        tempfile.mkdtemp(prefix="lockstep-b2-", dir="/run" if os.access("/run", os.W_OK) else None)
    )
    csock, dsock = run_dir / "containerd.sock", run_dir / "docker.sock"
    config = HOME / "daemon.json"
    config.write_text(json.dumps({"features": {"containerd-snapshotter": True}}), encoding="utf-8")
    cli_config = HOME / "cli"
    (cli_config / "cli-plugins").mkdir(parents=True, exist_ok=True)
    plugin = cli_config / "cli-plugins/docker-buildx"
    plugin.unlink(missing_ok=True)
    plugin.symlink_to(root / "usr/libexec/docker/cli-plugins/docker-buildx")
    path = f"{root / 'usr/bin'}:{root / 'usr/sbin'}:{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path}
    logs = {name: HOME / f"{name}.log" for name in ("containerd", "dockerd")}
    state = HOME / "state"  # images and build cache: removed afterwards (every build is --no-cache)
    # Each daemon in a network namespace of its own: a dockerd started with --bridge=none in the
    # host's namespace deleted the system engine's docker0 bridge, breaking `docker run -p` for
    # everyone. The builds need no network (--network=none); the sockets are files, reachable.
    isolated = ["unshare", "--net", "--"]
    containerd = [*isolated, str(root / "usr/bin/containerd"), "--address", str(csock)]
    containerd += ["--root", str(state / "containerd"), "--state", str(run_dir / "containerd-state")]
    dockerd = [
        *isolated,
        str(root / "usr/sbin/dockerd"),
        "--containerd",
        str(csock),
        "--host",
        f"unix://{dsock}",
    ]
    dockerd += ["--data-root", str(state / "docker"), "--exec-root", str(run_dir / "exec")]
    dockerd += ["--pidfile", str(run_dir / "dockerd.pid"), "--config-file", str(config)]
    dockerd += ["--bridge=none", "--iptables=false", "--ip6tables=false"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with logs["containerd"].open("ab") as out:
            procs.append(subprocess.Popen(containerd, stdout=out, stderr=subprocess.STDOUT, env=env))
        _wait(csock.exists, "the second builder's containerd", procs[0], logs["containerd"])
        with logs["dockerd"].open("ab") as out:
            procs.append(subprocess.Popen(dockerd, stdout=out, stderr=subprocess.STDOUT, env=env))
        client = {"PATH": path, "DOCKER_HOST": f"unix://{dsock}", "DOCKER_CONFIG": str(cli_config)}

        def answers() -> bool:
            p = subprocess.run(
                ["docker", "info"], env={**os.environ, **client}, capture_output=True, check=False
            )
            return p.returncode == 0

        _wait(answers, "the second builder's dockerd", procs[1], logs["dockerd"])
        yield client
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)


def cmd_verify() -> int:
    locked = ImageLock.read().record(AMD64)["digest"]
    image.preflight()
    inputs = image.current_inputs()
    with running() as env:
        who = image.builder_identity(env)
        log(f"second builder: engine {who['engine']}, buildx {who['buildx']}, containerd {who['containerd']}")
        result = image.buildx(ROOT, inputs, image.OUT_DIR / "second-builder.oci.tar", True, env=env)
    if result.digest != locked:
        raise ToolError(
            f"the second builder gives {result.digest}, {rel(IMAGE_LOCK)} says {locked}: "
            f"the digest depends on the builder; compare the two with the layers in {rel(result.oci.path)}"
        )
    log(f"second builder: same digest as {rel(IMAGE_LOCK)} ({result.seconds:.1f}s)")
    print(result.digest)
    return 0
