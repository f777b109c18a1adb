"""Build the stack's helper images (HAProxy in front, Prometheus) reproducibly, and lock their digests.

    python -m imagetool stack-images build [proxy|prometheus ...]   # default: both; prints the tags
    python -m imagetool stack-images lock     # build both, record their digests in image.lock's `stack`
    python -m imagetool stack-images verify   # build both with --no-cache; fail unless == image.lock

No image can be pulled on the build hosts. Both images start from `build/base/rootfs.tar` (`make
base`, checked against image/base.lock.json) and install the .debs that image/stack.toml pins,
from the store (store/stack/debs, each checked against image/store.lock.json right before the
build), then keep only the program's package closure (imagetool/minimal_root.py: no shell). The
build runs as the service image's does (imagetool.images.image.oci_build: --network=none,
SOURCE_DATE_EPOCH of the base, rewrite-timestamp), so the digests are functions of those inputs.
Tags: `lockstep-proxy:latest`, `lockstep-prometheus:latest` (deploy/compose.yaml's defaults).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from imagetool import common, layout
from imagetool.common import ROOT, ToolError, file_digest, log, rel
from imagetool.images import image
from imagetool.images.image_lock import IMAGE_LOCK, ImageLock
from imagetool.inputs import base, fetch, store
from imagetool.platforms import AMD64

DEPLOY = ROOT / layout.DEPLOY
DOCKERFILE = ROOT / layout.STACK_DOCKERFILE
HAPROXY_CFG = DEPLOY / "proxy/haproxy.cfg"
MINIMAL_ROOT = ROOT / layout.MINIMAL_ROOT
ROOTFS = AMD64.rootfs()
OUT_DIR = common.BUILD / "stack"
NAMES = ("proxy", "prometheus")
TAGS = {name: f"lockstep-{name}:latest" for name in NAMES}


def _checked_rootfs() -> Path:
    locked = base.load_lock().tarball_sha256
    if not ROOTFS.is_file() or file_digest(ROOTFS) != locked:
        raise ToolError(f"{rel(ROOTFS)}: missing or not image/base.lock.json's; run `make base`")
    return ROOTFS


def stack_debs() -> dict[str, dict[str, Any]]:
    """The store lock's stack .debs (store path -> {sha256, bytes})."""
    return {n: e for n, e in store.StoreLock.read().files.items() if store.group_of(n) == "stack"}


def inputs() -> dict[str, str]:
    """Every file the two images are made of, by sha256: what their digests are a function of."""
    files = {rel(p): file_digest(p) for p in (DOCKERFILE, HAPROXY_CFG, MINIMAL_ROOT, base.LOCK)}
    return {**files, **{name: e["sha256"] for name, e in sorted(stack_debs().items())}}


def _context(context: Path) -> None:
    """rootfs.tar, the checked .debs (private copies, checked after copying), minimal_root.py, haproxy.cfg."""
    shutil.copyfile(_checked_rootfs(), context / "rootfs.tar")
    fetch.ensure(["stack"], quiet=True)
    debs = stack_debs()
    (context / "debs").mkdir()
    for name in debs:
        shutil.copyfile(store.STORE / name, context / "debs" / Path(name).name)
    # Checked in the context itself: what the build reads is what the lock records.
    problems = store.check_files(context, {f"debs/{Path(n).name}": e for n, e in debs.items()}, ("debs",))
    store.refuse_altered(problems)
    shutil.copyfile(MINIMAL_ROOT, context / "minimal_root.py")
    shutil.copyfile(HAPROXY_CFG, context / "haproxy.cfg")


def build_oci(names: tuple[str, ...] = NAMES, no_cache: bool = False) -> dict[str, image.BuildResult]:
    """Each named image as an OCI tarball under build/stack/; name -> its build result."""
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise ToolError(f"unknown stack image {unknown[0]!r}; one of {', '.join(NAMES)}")
    epoch = base.load_lock().source_date_epoch
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory(dir=common.BUILD, prefix="stack-context-") as tmp:
        _context(Path(tmp))
        for name in names:
            dest = OUT_DIR / f"{name}.oci.tar"
            results[name] = image.oci_build(
                Path(tmp),
                dest,
                epoch,
                {},
                {},
                no_cache=no_cache,
                dockerfile=DOCKERFILE,
                target=name,
                what=name,
            )
            log(f"stack-images: {name} {results[name].digest}")
    return results


def build(name: str, tag: str | None = None) -> str:
    """Build one helper image and load it as `tag` (default: TAGS[name]); returns the tag."""
    result = build_oci((name,))[name]
    tag = tag or TAGS[name]
    image.load_and_tag(result, [tag])
    log(f"stack-images: loaded {tag}")
    return tag


def locked() -> dict[str, Any]:
    """image.lock's `stack`: {"digests": {name: digest}, "inputs": {file: sha256}}."""
    stack = ImageLock.read().stack
    if not (
        isinstance(stack, dict)
        and isinstance(stack.get("digests"), dict)
        and set(stack["digests"]) == set(NAMES)
    ):
        raise ToolError(
            f"{rel(IMAGE_LOCK)}: no `stack` digests of {', '.join(NAMES)}; run `make lock-stack-images`"
        )
    return stack


def cmd_lock() -> int:
    results = build_oci()
    lock = ImageLock.read()
    lock.record(AMD64)  # a well-formed lock, before anything is added to it
    document = lock.document | {
        "stack": {"digests": {n: r.digest for n, r in results.items()}, "inputs": inputs()}
    }
    common.write_json_atomic(IMAGE_LOCK, document)
    log(f"stack-images: wrote `stack` into {rel(IMAGE_LOCK)}")
    return 0


def cmd_verify() -> int:
    stack = locked()
    changed = sorted(
        k for k in stack["inputs"].keys() | inputs().keys() if stack["inputs"].get(k) != inputs().get(k)
    )
    results = build_oci(no_cache=True)
    differ = [
        f"{n} {r.digest} (locked {stack['digests'][n]})"
        for n, r in results.items()
        if r.digest != stack["digests"][n]
    ]
    if differ:
        why = (
            f"inputs changed: {', '.join(changed)}"
            if changed
            else "same inputs: the build is not reproducible"
        )
        raise ToolError(f"stack images differ from {rel(IMAGE_LOCK)}: {'; '.join(differ)}; {why}")
    log(f"stack-images: rebuilt with --no-cache, digests equal {rel(IMAGE_LOCK)}'s")
    return 0
