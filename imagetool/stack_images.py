"""Build the stack's helper images (front proxy, Prometheus) from the project's Debian base.

    python -m imagetool stack-images build [proxy|prometheus ...]   # default: both

No image can be pulled on the build hosts, so both start from `build/base/rootfs.tar` (`make base`,
checked against image/base.lock.json) like the service image does. The proxy adds
deploy/proxy/proxy.py; Prometheus adds the server binary from Debian's `prometheus` package
(`apt-get download`, the host's own archive). Tags: `lockstep-proxy:latest`,
`lockstep-prometheus:latest` (what deploy/compose.yaml defaults to). These are operational helpers:
the service image alone is pinned by digest.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from imagetool.common import ROOT, ToolError, file_digest, log, main_wrapper, read_json, run

DEPLOY = ROOT / "deploy"
ROOTFS = ROOT / "build/base/rootfs.tar"
TAGS = {"proxy": "lockstep-proxy:latest", "prometheus": "lockstep-prometheus:latest"}


def _checked_rootfs() -> Path:
    locked = read_json(ROOT / "image/base.lock.json", "base lock")["tarball"]["sha256"]
    if not ROOTFS.is_file() or file_digest(ROOTFS) != locked:
        raise ToolError(f"{ROOTFS.relative_to(ROOT)}: missing or not image/base.lock.json's; run `make base`")
    return ROOTFS


def _prometheus_binary(dest: Path) -> None:
    """usr/bin/prometheus out of the archive's `prometheus` .deb."""
    with tempfile.TemporaryDirectory() as tmp:
        # apt's sandbox user cannot write to a root-owned temporary directory.
        Path(tmp).chmod(0o755)
        run(["apt-get", "download", "-qq", "prometheus"], cwd=Path(tmp), capture=True)
        [deb] = Path(tmp).glob("prometheus_*.deb")
        run(["dpkg-deb", "-x", str(deb), f"{tmp}/root"], capture=True)
        shutil.copy2(f"{tmp}/root/usr/bin/prometheus", dest / "prometheus")
        log(f"stack-images: prometheus from {deb.name}")


def build(name: str, tag: str | None = None) -> str:
    """Build one helper image as `tag` (default: TAGS[name]); returns the tag."""
    if name not in TAGS:
        raise ToolError(f"unknown stack image {name!r}; one of {sorted(TAGS)}")
    rootfs = _checked_rootfs()
    with tempfile.TemporaryDirectory(dir=ROOT / "build") as tmp:
        context = Path(tmp)
        os.link(rootfs, context / "rootfs.tar")
        if name == "proxy":
            shutil.copy2(DEPLOY / "proxy/proxy.py", context / "proxy.py")
        else:
            _prometheus_binary(context)
        dockerfile = DEPLOY / name / "Dockerfile"
        tag = tag or TAGS[name]
        build_cmd = ["docker", "build", "--network=none", "-q", "-t", tag, "-f", str(dockerfile)]
        run([*build_cmd, str(context)], capture=True)
    log(f"stack-images: built {tag}")
    return tag


def main() -> int:
    args = sys.argv[1:]
    if not args or args[0] != "build":
        log("usage: python -m imagetool stack-images build [proxy|prometheus ...]")
        return 2
    for name in args[1:] or list(TAGS):
        print(build(name))
    return 0


if __name__ == "__main__":
    main_wrapper(main)
