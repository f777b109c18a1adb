"""Keep the deploy files pinned to the image that image.lock records: its index over every platform.

Every `sha256:<64 hex>` in a deploy file is an image reference (the files hold no other hashes), so
`check` requires each one to equal image.lock's index digest (the amd64 manifest's for a lock without
an index) and `sync` rewrites them after `make lock-image`. A node pulling the index gets its own
platform's manifest; `make push` pushes both manifests and the index.

Usage: python -m imagetool deploy {check,sync}
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from imagetool import layout
from imagetool.common import InputError
from imagetool.images.image_lock import LOCK_NAME, ImageLock

DEPLOY_DIR = layout.DEPLOY
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def deploy_files(root: Path = DEPLOY_DIR) -> list[Path]:
    """Every YAML file under deploy/ that pins an image by digest."""
    files = sorted(p for p in root.rglob("*.y*ml") if _DIGEST.search(p.read_text()))
    if not files:
        raise InputError(f"{root}: no file pins the image by digest")
    return files


def stale(digest: str, root: Path = DEPLOY_DIR) -> list[str]:
    """One line per digest reference that differs from `digest`."""
    return [
        f"{path}:{n}: {found} (image.lock: {digest})"
        for path in deploy_files(root)
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        for found in _DIGEST.findall(line)
        if found != digest
    ]


def sync(digest: str, root: Path = DEPLOY_DIR) -> list[Path]:
    """Rewrite every digest reference to `digest`; returns the files that changed."""
    changed = []
    for path in deploy_files(root):
        text = path.read_text()
        new = _DIGEST.sub(digest, text)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


def check_or_sync(verb: str) -> int:
    """`python -m imagetool deploy check|sync`: 1, naming each file, when one pins another digest
    than image.lock's; sync rewrites them."""
    digest = ImageLock.read(LOCK_NAME).pinned
    if verb == "sync":
        for path in sync(digest):
            print(f"deploy: {path} now pins {digest}")
        return 0
    problems = stale(digest)
    for line in problems:
        print(f"error: {line}; run `make sync-deploy`", file=sys.stderr)
    return 1 if problems else 0
