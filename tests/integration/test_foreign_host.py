"""A foreign host: `make repro` and `make verify` from Debian 13's root, with its own Python (3.13)
and glibc (2.41), give the committed dvc.lock and image.lock's digest.

The root is made by mmdebstrap (minbase + python3, python3-venv, make, git, ca-certificates) and
entered with chroot in a private mount namespace (`unshare --mount`: every mount goes when the
command ends). Beside the repo copy it sees only the engine's socket and the host's docker CLI and
buildx plugin (bind-mounted, as a host with Docker installed would have them), and a wheelhouse of
the dev lock's files for its Python (pip runs with no index: the package index is reached here
through a proxy whose CA only the host trusts). The repo copy sits at the same path inside as
outside, because the engine resolves the toolchain's `-v CWD:CWD` on the host.

The trixie .debs come from the Debian mirror, not the store: the root is no input of anything
locked, only "another distribution", and a later trixie point release tests the same claim.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from contract import locked_outs, parse_dvc_lock
from harness import REPO_ROOT as ROOT
from harness import copy_repo
from imagetool.images.image_lock import ImageLock
from imagetool.inputs import fetch, store
from imagetool.platforms import AMD64

pytestmark = [pytest.mark.slow, pytest.mark.docker]

SUITE = "trixie"
PACKAGES = "python3,python3-venv,make,git,ca-certificates"
SLIM = [f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("man", "doc", "locale", "info")]
CLI_PLUGIN = "usr/libexec/docker/cli-plugins/docker-buildx"
WHEELHOUSE = ROOT / "build/foreign/wheels"  # kept between sessions: pip skips files already there


def _python_version(root: Path) -> str:
    [exe] = [p.name for p in (root / "usr/bin").glob("python3.*") if re.fullmatch(r"python3\.\d+", p.name)]
    return exe.removeprefix("python")


def _pip_download(lock_text: str, dest: Path, binary_for: str | None) -> subprocess.CompletedProcess[str]:
    req = dest.parent / "requirements-download.txt"
    req.write_text(lock_text)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--require-hashes",
        "--no-deps",
        "-d",
        str(dest),
    ]
    if binary_for is not None:
        abi = "cp" + binary_for.replace(".", "")
        cmd += ["--only-binary=:all:", "--python-version", binary_for, "--implementation", "cp"]
        cmd += ["--abi", abi, "--abi", "abi3", "--abi", "none"]
        for plat in [*(f"manylinux_2_{m}_x86_64" for m in range(41, 4, -1)), "manylinux2014_x86_64", "any"]:
            cmd += ["--platform", plat]
    else:
        cmd += ["--no-binary=:all:"]
    return subprocess.run([*cmd, "-r", str(req)], capture_output=True, text=True, check=False)


def dev_wheelhouse(python: str) -> Path:
    """Every file the dev lock installs on ``python``: its wheel where the pinned version has one,
    else the pinned sdist (hash-checked all the same). Downloaded on the host."""
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    entries = re.split(r"\n(?=[a-z0-9])", (ROOT / "requirements/dev.txt").read_text())
    source_only: list[str] = []
    while True:
        wanted = [e for e in entries if not any(e.startswith(f"{n}==") for n in source_only)]
        proc = _pip_download("\n".join(wanted), WHEELHOUSE, python)
        if proc.returncode == 0:
            break
        m = re.search(r"requirement (\S+)==", proc.stderr)
        assert m is not None, proc.stderr
        assert len(source_only) < 10, proc.stderr
        source_only.append(m.group(1))
    if source_only:
        sdists = [e for e in entries if any(e.startswith(f"{n}==") for n in source_only)]
        proc = _pip_download("\n".join(sdists), WHEELHOUSE, None)
        assert proc.returncode == 0, proc.stderr
    return WHEELHOUSE


@dataclass
class ForeignHost:
    root: Path
    wheelhouse: Path
    python: str

    def run(self, repo: Path | None, command: str) -> subprocess.CompletedProcess[str]:
        """``command`` inside the root (in ``repo``, mounted at its own path, if given), as root, in
        a private mount namespace."""
        docker = shutil.which("docker")
        plugins = [Path("/") / CLI_PLUGIN, Path("/usr/local/lib/docker/cli-plugins/docker-buildx")]
        plugin = next((p for p in plugins if p.is_file()), None)
        assert docker is not None, "the host's docker CLI"
        assert plugin is not None, "the host's buildx plugin"
        r = self.root
        binds = [
            (self.wheelhouse, Path("/wheelhouse")),
            (Path("/var/run/docker.sock"), Path("/run/docker.sock")),
        ]
        binds += [(Path(docker), Path("/usr/local/bin/docker")), (plugin, Path("/") / CLI_PLUGIN)]
        binds += [(repo, repo)] if repo is not None else []
        lines = ["set -e", f"mount -t proc proc {r}/proc", f"mount --rbind /dev {r}/dev"]
        for src, dest in binds:
            inside = f"{r}{dest}"
            make = (
                f"mkdir -p {inside}" if src.is_dir() else f"mkdir -p {Path(inside).parent} && touch {inside}"
            )
            lines += [make, f"mount --bind {src} {inside}"]
        env = "PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 PIP_NO_INDEX=1"
        env += " PIP_FIND_LINKS=/wheelhouse PIP_DISABLE_PIP_VERSION_CHECK=1 LOCKSTEP_OFFLINE=1"
        # This host's claim is amd64's digest; arm64's rebuild is tests/integration/test_platforms.py's
        # (the chroot's own /proc has no binfmt_misc mount to find qemu's handler in).
        env += f" PLATFORM={os.environ.get('PLATFORM') or 'linux/amd64'}"
        lines.append(f"exec chroot {r} env -i {env} sh -c 'cd {repo or '/'} && {command}'")
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(lines)],
            capture_output=True,
            text=True,
            check=False,
            timeout=1200,
        )


@pytest.fixture(scope="session")
def foreign_host(tmp_path_factory: pytest.TempPathFactory, engine: None) -> ForeignHost:
    """Debian 13's root, made once per session (mmdebstrap, ~1 min), with the dev lock's wheels."""
    root = tmp_path_factory.mktemp("foreign") / "root"
    mirror = fetch.host_suite_sources(store.load_engine_definition()["host_suite"])[0].uri
    cmd = ["mmdebstrap", "--variant=minbase", f"--include={PACKAGES}", *SLIM, SUITE, str(root)]
    proc = subprocess.run([*cmd, f"deb {mirror} {SUITE} main"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    python = _python_version(root)
    return ForeignHost(root, dev_wheelhouse(python), python)


@pytest.fixture(scope="session")
def foreign_repo(tmp_path_factory: pytest.TempPathFactory, foreign_host: ForeignHost) -> Path:
    """A fresh clone's copy (no outputs, no venv), with the filled store hard-linked in."""
    repo = copy_repo(tmp_path_factory.mktemp("foreign-repo") / "repo", with_store=True)
    subprocess.run(["cp", "-al", str(ROOT / "store"), str(repo / "store")], check=True)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"]):
        subprocess.run(cmd, cwd=repo, check=True)
    commit = ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm", "copy"]
    subprocess.run(commit, cwd=repo, check=True)
    return repo


def test_the_root_is_another_distribution(foreign_host: ForeignHost) -> None:
    assert foreign_host.python != f"{sys.version_info.major}.{sys.version_info.minor}"
    proc = foreign_host.run(None, "cat /etc/debian_version; ldd --version | head -1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("13."), proc.stdout
    glibc = proc.stdout.split()[-1]
    assert glibc != "2.36", proc.stdout  # Debian 12's, the toolchain's


def test_make_repro_gives_the_committed_dvc_lock(foreign_host: ForeignHost, foreign_repo: Path) -> None:
    proc = foreign_host.run(foreign_repo, "make setup && make repro")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "LOCKSTEP_TRAIN=host" not in proc.stderr
    venv_python = (foreign_repo / ".venv/bin").glob("python3.*")
    assert {p.name for p in venv_python} >= {f"python{foreign_host.python}"}  # the root's own Python
    lock = foreign_repo / "dvc.lock"
    assert locked_outs(parse_dvc_lock(lock.read_bytes(), lock)) == locked_outs(
        parse_dvc_lock((ROOT / "dvc.lock").read_bytes(), ROOT / "dvc.lock")
    )
    assert lock.read_text() == (ROOT / "dvc.lock").read_text()


def test_make_verify_gives_the_locked_digest(foreign_host: ForeignHost, foreign_repo: Path) -> None:
    """After `make repro` (the test above; run alone, this one trains first)."""
    if not (foreign_repo / "models/model.joblib").is_file():
        proc = foreign_host.run(foreign_repo, "make setup && make repro")
        assert proc.returncode == 0, proc.stderr[-3000:]
    proc = foreign_host.run(foreign_repo, "make verify")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    locked = ImageLock.read(ROOT / "image.lock").record(AMD64)["digest"]
    assert proc.stdout.strip().splitlines()[-1] == locked
