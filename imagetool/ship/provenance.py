"""SLSA v1 provenance for the image, as an in-toto statement, and its verification.

    python -m imagetool provenance write [OUT]            # default build/provenance.intoto.json
    python -m imagetool provenance verify FILE [--image REF]
    python -m imagetool provenance predicate FILE [OUT]   # default build/provenance.predicate.json

The subject is the image digest that image.lock records; the resolved dependencies are every input
with its hash: each source file the build copies (sha256, as image.lock records them), the locks
(serve requirements, base lock, store lock), the exact stored files the build reads (wheels, base
root filesystem; sha256), the DVC outputs (md5 from dvc.lock) and, in a git checkout, the commit.
The builder's versions are information (runDetails), not inputs: any builder that reproduces the
digest is as good as another. `verify` rebuilds the statement from the tree and names every
dependency that differs; with --image it also checks the local image's digest.
`predicate` writes the statement's SLSA predicate alone, once `verify` passes: what `cosign attest
--type slsaprovenance1 --predicate` takes (cosign writes the statement itself, with the image it
attests as subject). Signing is left to cosign: keyless in CI, `--key` locally (docs/supply-chain.md).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import contract
from imagetool import layout, platforms
from imagetool.common import InputError, ToolError
from imagetool.images.image_lock import LOCK_NAME, ImageLock
from imagetool.inputs.locks import LockError, parse_lock
from imagetool.inputs.store import StoreLock
from imagetool.ship.sbom import STORE_LOCK, read_json, serve_lock_for

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:lockstep:build:oci-image:v1"
BUILDER_ID = "urn:lockstep:builder:docker-buildx-network-none"
BUILD_LOCK = Path(layout.BUILD_LOCK)
DEFAULT_OUT = layout.BUILD / "provenance.intoto.json"
PREDICATE_OUT = layout.BUILD / "provenance.predicate.json"


def _json(path: Path) -> Any:
    return read_json(path, InputError)


def _sha256_file(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


def git_commit(root: Path) -> str | None:
    """HEAD's commit when `root` is a clean git checkout (a dirty tree has no commit to name)."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    if head.returncode != 0 or dirty.returncode != 0 or dirty.stdout.strip():
        return None
    return head.stdout.strip()


def dependencies(root: Path, lock: dict[str, Any]) -> list[dict[str, Any]]:
    """Every input of the image build (`lock`: image.lock's document) as an in-toto
    ResourceDescriptor, sorted by name."""
    inputs = lock.get("inputs") or {}
    deps: dict[str, dict[str, str]] = {}
    for name, digest in (inputs.get("sources") or {}).items():
        deps[name] = {"sha256": digest}
    serve_lock = serve_lock_for(root)
    base_locks = [p.base_lock(Path()) for p in platforms.ALL]
    for path in (serve_lock, BUILD_LOCK, *(p for p in base_locks if (root / p).is_file()), STORE_LOCK):
        deps[str(path)] = {"sha256": _sha256_file(root / path)}
    # The stored files the builds read: the wheels both locks allow, and the base root filesystems
    # (each platform's: amd64's at the store's top, arm64's under arm64/).
    try:
        allowed = {
            h for p in (serve_lock, BUILD_LOCK) for r in parse_lock(root / p).values() for h in r.hashes
        }
    except (OSError, LockError) as exc:
        raise InputError(str(exc)) from None
    wheel_folders = tuple(f"{p.store_prefix}wheels/" for p in platforms.ALL)
    rootfs_names = {f"{p.store_prefix}base/rootfs.tar" for p in platforms.ALL}
    try:
        stored = StoreLock.read(root / STORE_LOCK).files
    except ToolError as exc:
        raise InputError(str(exc)) from None
    for name, entry in stored.items():
        wheel = name.startswith(wheel_folders) and entry["sha256"] in allowed
        if wheel or name in rootfs_names:
            deps[f"store/{name}"] = {"sha256": entry["sha256"]}
    try:
        outs = contract.locked_outs(contract.load_dvc_lock(root / contract.DVC_LOCK_FILE))
    except contract.ContractError as exc:
        raise InputError(str(exc)) from None
    for name, md5 in outs.items():
        deps.setdefault(name, {})["md5"] = md5
    commit = git_commit(root)
    if commit:
        deps["git+HEAD"] = {"gitCommit": commit}
    return [{"name": name, "digest": deps[name]} for name in sorted(deps)]


def statement(root: Path = Path()) -> dict[str, Any]:
    """The in-toto statement for the image image.lock records."""
    image_lock = ImageLock.read(root / LOCK_NAME)
    digest, lock = image_lock.digest, image_lock.document
    inputs = lock.get("inputs") or {}
    # linux/amd64's manifest first (what `verify --image` compares a local image with), then every
    # other platform's manifest and the index over them: the provenance covers what `make push` sends.
    subject = [{"name": "lockstep", "digest": {"sha256": digest.removeprefix("sha256:")}}]
    for name, record in sorted((lock.get("platforms") or {}).items()):
        subject.append(
            {"name": f"lockstep:{name}", "digest": {"sha256": str(record["digest"]).removeprefix("sha256:")}}
        )
    if image_lock.has_index:
        index = image_lock.index()["digest"].removeprefix("sha256:")
        subject.append({"name": "lockstep:index", "digest": {"sha256": index}})
    return {
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "dockerfile": "Dockerfile",
                    "network": "none",
                    "platform": inputs.get("platform"),
                    "compression": inputs.get("compression"),
                    "sourceDateEpoch": inputs.get("source_date_epoch"),
                },
                "internalParameters": {"sourceTreeSha256": inputs.get("source_tree_sha256")},
                "resolvedDependencies": dependencies(root, lock),
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": lock.get("built_with") or {}},
                "metadata": {},
            },
        },
    }


def image_digest(ref: str) -> str:
    """The manifest digest of a local image (the containerd image store reports it as the Id)."""
    run = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        raise InputError(f"image {ref}: {run.stderr.strip() or 'not found'}")
    return run.stdout.strip()


def verify(document: dict[str, Any], root: Path = Path(), image: str | None = None) -> list[str]:
    """Problems with a statement against the tree (and a local image); [] when it holds."""
    problems = []
    if document.get("_type") != STATEMENT_TYPE or document.get("predicateType") != PREDICATE_TYPE:
        problems.append(f"not an in-toto {STATEMENT_TYPE} statement with a {PREDICATE_TYPE} predicate")
        return problems
    expected = statement(root)
    if document.get("subject") != expected["subject"]:
        problems.append(f"subject {document.get('subject')} is not image.lock's {expected['subject']}")
    got = {
        d.get("name"): d.get("digest")
        for d in document["predicate"]["buildDefinition"]["resolvedDependencies"]
    }
    want = {d["name"]: d["digest"] for d in expected["predicate"]["buildDefinition"]["resolvedDependencies"]}
    for name in sorted(got.keys() | want.keys(), key=str):
        if name not in want:
            problems.append(f"dependency {name}: not an input of this tree")
        elif name not in got:
            problems.append(f"dependency {name}: missing from the statement (tree has {want[name]})")
        elif got[name] != want[name]:
            problems.append(f"dependency {name}: statement says {got[name]}, the tree has {want[name]}")
    if image is not None:
        actual = image_digest(image)
        subject = "sha256:" + expected["subject"][0]["digest"]["sha256"]
        if actual != subject:
            problems.append(f"image {image} has digest {actual}, the statement's subject is {subject}")
    return problems


def write(out: Path) -> int:
    """`python -m imagetool provenance write [OUT]`: the statement for the tree as it is."""
    text = json.dumps(statement(), indent=2, sort_keys=True) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"provenance: wrote {out}")
    return 0


def _problems(file: Path, problems: list[str]) -> int:
    for line in problems:
        print(f"error: {file}: {line}", file=sys.stderr)
    return 1


def check(file: Path, image: str | None) -> int:
    """`python -m imagetool provenance verify FILE [--image REF]`: 1, naming each difference, unless
    the statement matches the tree (and the local image)."""
    problems = verify(_json(file), image=image)
    if problems:
        return _problems(file, problems)
    print(f"provenance: {file} matches the tree" + (f" and {image}" if image else ""))
    return 0


def write_predicate(file: Path, out: Path) -> int:
    """`python -m imagetool provenance predicate FILE [OUT]`: the verified statement's predicate
    alone, for `cosign attest --predicate`."""
    doc = _json(file)
    problems = verify(doc)
    if problems:
        return _problems(file, problems)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc["predicate"], indent=2, sort_keys=True) + "\n")
    print(f"provenance: wrote {out} (the predicate of {file}, {PREDICATE_TYPE})")
    return 0
