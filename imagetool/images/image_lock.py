"""image.lock, read by one typed reader: what `make lock-image` recorded for each platform (the
digest, the inputs it was built from, the builder, the layers), the index over every platform's
manifest that the deploy files pin, and the stack images' digests (`make lock-stack-images`).

linux/amd64's record is the lock's top level (locks from before multi-platform had only it); other
platforms' are under `platforms`. Every reader (image, deploy, registry, sbom, provenance, the
second builder, the stack images) goes through `ImageLock.read`, so a malformed lock gets the same
one-line refusal, naming the file, wherever it is read: exit 2 for a missing or unreadable lock or
a digest of the wrong form, exit 1 (as `make verify` always gave) for a record that was edited.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagetool import layout, platforms
from imagetool.common import ROOT, InputError, ToolError, read_json, rel
from imagetool.platforms import AMD64, Platform

LOCK_NAME = layout.IMAGE_LOCK  # relative: the deploy and registry verbs read it from the working directory
IMAGE_LOCK = ROOT / LOCK_NAME
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# What each recorded input means when it differs (the image's inputs; the builder is information).
INPUT_MEANING = {
    "base_lock_sha256": "the Debian base moved (image/base.lock.json changed)",
    "requirements_sha256": "the Python dependencies changed (requirements/serve.txt)",
    "model_md5": "a changed model (models/model.joblib)",
    "source_tree_sha256": "the service source or build recipe changed",
    "source_date_epoch": "another SOURCE_DATE_EPOCH (from image/base.lock.json)",
    "platform": "another target platform",
    "compression": "another layer compression",
}


def tree_sha256(sources: dict[str, str]) -> str:
    """The hash of a source tree's {path: sha256} listing, as image.lock records it."""
    return hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()


def validate_record(record: Any, path: Path = IMAGE_LOCK) -> dict[str, Any]:
    """A platform's record (or a whole lock, whose top level is amd64's), or a ToolError naming
    `path` and every problem: the digest, the inputs, and the sources against their hash. Exit 1,
    as `make verify` has always failed on a lock that was edited or damaged."""
    if not isinstance(record, dict):
        raise ToolError(f"{rel(path)}: not a JSON object")
    problems = []
    if not DIGEST.fullmatch(str(record.get("digest", ""))):
        problems.append("digest must be sha256:<64 hex digits>")
    inputs = record.get("inputs")
    if not isinstance(inputs, dict) or set(INPUT_MEANING) - set(inputs) or "sources" not in inputs:
        problems.append(f"inputs must record {sorted([*INPUT_MEANING, 'sources'])}")
    elif tree_sha256(inputs["sources"]) != inputs["source_tree_sha256"]:
        problems.append("inputs.sources does not hash to inputs.source_tree_sha256 (edited by hand?)")
    if problems:
        raise ToolError(f"{rel(path)}: " + "; ".join(problems))
    return record


def recorded(lock: dict[str, Any], plat: Platform) -> Any:
    """The platform's record in a lock document, unchecked: linux/amd64's is the lock's top level."""
    return lock if plat is AMD64 else (lock.get("platforms") or {}).get(plat.name)


def computed_index(lock: dict[str, Any]) -> dict[str, Any] | None:
    """The index over every platform's locked manifest; None until each platform has a record
    with its manifest size."""
    manifests = {}
    for plat in platforms.ALL:
        record = recorded(lock, plat)
        if not isinstance(record, dict) or not isinstance(record.get("manifest_size"), int):
            return None
        manifests[plat.name] = {"digest": record["digest"], "size": record["manifest_size"]}
    data = platforms.index_bytes(manifests)
    return {"digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data), "manifests": manifests}


@dataclass(frozen=True)
class ImageLock:
    """image.lock as read. Reading checks only that it is a JSON object: each accessor checks what it
    returns (a platform's full record, a digest's form, the index), so a tool that needs only the
    digest (push, the SBOM) works from a lock that holds only that."""

    document: dict[str, Any]
    path: Path = IMAGE_LOCK

    @classmethod
    def read(cls, path: Path = IMAGE_LOCK) -> ImageLock:
        """The lock at `path`, or an InputError naming it (missing, not JSON, not an object)."""
        if not path.is_file():
            raise InputError(f"{rel(path)}: missing (image lock); `make lock-image` writes it")
        try:
            document = read_json(path, "image lock")
        except ToolError as exc:
            raise InputError(str(exc)) from None
        if not isinstance(document, dict):
            raise InputError(f"{rel(path)}: not a JSON object")
        return cls(document, path)

    @property
    def digest(self) -> str:
        """linux/amd64's manifest digest (the lock's top level), checked for its form only."""
        digest = self.document.get("digest")
        if digest is None:
            raise InputError(f"{rel(self.path)}: cannot read the image digest (no 'digest')")
        if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
            raise InputError(f"{rel(self.path)}: digest {digest!r} is not sha256:<64 hex>")
        return digest

    def record(self, plat: Platform) -> dict[str, Any]:
        """The platform's record, checked in full (digest, inputs, sources against their hash)."""
        record = recorded(self.document, plat)
        if not isinstance(record, dict):
            raise InputError(
                f"{rel(self.path)} has no {plat.name} record; run `make lock-image{plat.make_flag}`"
            )
        return validate_record(record, self.path)

    @property
    def has_index(self) -> bool:
        return "index" in self.document

    def index(self) -> dict[str, Any]:
        """The recorded index: {digest, size, manifests: {platform: {digest, size}}}."""
        try:
            index = self.document["index"]
            manifests = {name: (str(m["digest"]), int(m["size"])) for name, m in index["manifests"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(
                f"{rel(self.path)}: no index over the platforms ({exc}); `make lock-image` records one"
            ) from None
        bad = [d for d, _ in manifests.values() if not DIGEST.fullmatch(d)]
        if bad or not DIGEST.fullmatch(str(index.get("digest"))):
            raise InputError(f"{rel(self.path)}: index digests must be sha256:<64 hex>")
        return dict(index)

    def index_follows(self) -> bool:
        """Whether the recorded index is the one the platforms' records give (or there is none)."""
        return not self.has_index or self.document["index"] == computed_index(self.document)

    @property
    def pinned(self) -> str:
        """What the deploy files pin: the index's digest, or amd64's manifest's when it has none."""
        return str(self.index()["digest"]) if self.has_index else self.digest

    @property
    def stack(self) -> Any:
        """The stack images' digests (`make lock-stack-images`), or None before they are locked."""
        return self.document.get("stack")
