"""The training toolchain image: the pipeline's stages run in it (pipeline/toolchain.py).

    python -m imagetool toolchain build [--no-cache]   # from the store, offline; load it; print its digest
    python -m imagetool toolchain lock                 # build and write image/toolchain.lock.json
    python -m imagetool toolchain verify               # --no-cache rebuild == the lock? (exit 2 if not)
    python -m imagetool toolchain check                # the lock's inputs == the tree (no build)
    python -m imagetool toolchain ensure               # the locked image is in the engine, else build it

Made from the service image's own locked inputs: the base root filesystem (image/base.lock.json,
Debian 12's python3 3.11.2 and glibc 2.36) and the wheels of the runtime lock (requirements.txt,
installed by requirements/build.txt's pip). The build context (build/toolchain/context) holds
only those, hard-linked from the store after their hashes are checked; the service image's context,
.dockerignore and digest do not see it. The recipe is image/toolchain.Dockerfile.

The digest is locked in its own file, image/toolchain.lock.json, not in image.lock: the model
(dvc.lock) is made by the toolchain and image.lock is made from dvc.lock, so one file holding both
would be rewritten at both ends of that chain (`make lock-image` rewrites image.lock whole).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from imagetool import common, layout
from imagetool.common import ROOT, InputError, ToolError, file_digest, log, read_json, rel
from imagetool.images import image, ocidiff
from imagetool.inputs import base, fetch, store, wheels
from imagetool.platforms import AMD64

LOCK = ROOT / layout.TOOLCHAIN_LOCK
DOCKERFILE = ROOT / layout.TOOLCHAIN_DOCKERFILE
OUT_DIR = common.BUILD / "toolchain"
OCI_TAR = OUT_DIR / "toolchain.oci.tar"
LAST_BUILD = OUT_DIR / "last-build.json"
REPOSITORY = "lockstep-toolchain"
LOCK_NAMES = (layout.TRAIN_LOCK, layout.BUILD_LOCK)  # the venv's packages, and the pip that installs them
# Docker Engine 26.0 ships BuildKit 0.13, the first with rewrite-timestamp (image/README.md).
MIN_ENGINE = (26, 0)
ENGINE_HINT = "install Docker Engine >= 26.0 (BuildKit >= 0.13) with buildx; on Debian: `make engine`"
INPUT_MEANING = {
    "base_lock_sha256": "the Debian base moved (image/base.lock.json changed)",
    "requirements_sha256": "the training libraries changed (requirements.txt)",
    "build_lock_sha256": "another pip installs them (requirements/build.txt)",
    "dockerfile_sha256": "the recipe changed (image/toolchain.Dockerfile)",
    "source_date_epoch": "another SOURCE_DATE_EPOCH (from image/base.lock.json)",
    "platform": "another target platform",
    "compression": "another layer compression",
}


# --- the engine -------------------------------------------------------------------------------


def engine_problem(env: dict[str, str] | None = None) -> str | None:
    """One line saying what to do when Docker is missing, not answering or too old; None if fine."""
    try:
        p = subprocess.run(
            ["docker", "version", "--format", "{{json .Server}}"],
            capture_output=True,
            text=True,
            check=False,
            env=env,
            timeout=30,
        )
    except FileNotFoundError:
        return f"docker: not found on PATH; {ENGINE_HINT}"
    except subprocess.TimeoutExpired:
        return "the Docker engine does not answer `docker version` within 30 s; start it (`make engine`)"
    server = p.stdout.strip()
    if p.returncode != 0 or server in ("", "null"):
        why = (p.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"no Docker engine answers ({why}); start it (`make engine`)"
    version = str(json.loads(server).get("Version", ""))
    m = re.match(r"(\d+)\.(\d+)", version)
    if m is None or (int(m.group(1)), int(m.group(2))) < MIN_ENGINE:
        return f"Docker Engine {version or '(unknown version)'} is too old for the toolchain; {ENGINE_HINT}"
    return None


def require_engine() -> None:
    if problem := engine_problem():
        raise InputError(problem)


def image_id(ref: str) -> str | None:
    """The engine's id of ``ref`` (with the containerd image store: the manifest digest), or None."""
    p = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    return p.stdout.strip() if p.returncode == 0 else None


# --- the lock ---------------------------------------------------------------------------------


def validate_lock(lock: Any, path: Path = LOCK) -> dict[str, Any]:
    if not isinstance(lock, dict):
        raise InputError(f"{rel(path)}: not a JSON object")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", str(lock.get("digest", ""))):
        raise InputError(f"{rel(path)}: digest must be sha256:<64 hex digits>, not {lock.get('digest')!r}")
    inputs = lock.get("inputs")
    if not isinstance(inputs, dict) or set(INPUT_MEANING) - set(inputs):
        raise InputError(f"{rel(path)}: inputs must record {sorted(INPUT_MEANING)}")
    return lock


def locked_digest(root: Path = ROOT) -> str:
    """image/toolchain.lock.json's digest (under ``root``: a repo copy reads its own)."""
    path = root / LOCK.relative_to(ROOT)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{rel(path)}: missing; `make lock-toolchain` writes it") from None
    except ValueError as e:
        raise InputError(f"{rel(path)}: not valid JSON ({e})") from None
    return str(validate_lock(data, path)["digest"])


def current_inputs(root: Path = ROOT) -> dict[str, Any]:
    blk_path = AMD64.base_lock(root)  # the toolchain is built on amd64's base
    blk = base.load_lock(AMD64, root)
    return {
        "base_lock_sha256": file_digest(blk_path),
        "requirements_sha256": file_digest(root / layout.TRAIN_LOCK),
        "build_lock_sha256": file_digest(root / layout.BUILD_LOCK),
        "dockerfile_sha256": file_digest(root / DOCKERFILE.relative_to(ROOT)),
        "source_date_epoch": blk.source_date_epoch,
        "platform": image.PLATFORM,
        "compression": image.COMPRESSION,
    }


def input_differences(locked: dict[str, Any], now: dict[str, Any]) -> list[str]:
    return [
        f"{key}: {meaning}: {locked.get(key)} -> {now.get(key)}"
        for key, meaning in INPUT_MEANING.items()
        if locked.get(key) != now.get(key)
    ]


# --- the build ---------------------------------------------------------------------------------


def make_context(context: Path) -> Path:
    """build/toolchain/context: the base rootfs and the locked wheels, from the store, hash-checked."""
    try:
        fetch.place_base()  # build/base/rootfs.tar from the store, checked against the base lock
        fetch.ensure(["wheels"], quiet=True)
    except fetch.StoreIncompleteError as e:
        raise InputError(f"the toolchain cannot be built offline from the store: {e}") from None
    except InputError:
        raise
    except ToolError as e:
        raise InputError(f"the toolchain cannot be built offline from the store: {e}") from None
    reqs = wheels.load_locks(ROOT, LOCK_NAMES)
    wanted = {r.name for r in reqs}
    shutil.rmtree(context, ignore_errors=True)
    (context / "wheels").mkdir(parents=True)
    for path in sorted(store.STORE.joinpath("wheels").glob("*.whl")):
        if wheels.wheel_name_version(path.name)[0] in wanted:
            store.place(path, context / "wheels" / path.name)
    problems = wheels.check_wheels(reqs, context / "wheels")
    if problems:
        raise InputError("the store's wheels do not match the locks:\n  " + "\n  ".join(problems))
    store.place(base.TARBALL, context / "rootfs.tar")
    shutil.copyfile(ROOT / layout.TRAIN_LOCK, context / "requirements.txt")
    return context


def labels(inputs: dict[str, Any]) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": "lockstep-toolchain",
        "org.opencontainers.image.description": "Training toolchain; digest: a function of the locked inputs",
        "io.lockstep.requirements.sha256": inputs["requirements_sha256"],
        "io.lockstep.base-lock.sha256": inputs["base_lock_sha256"],
    }


def _build(inputs: dict[str, Any], dest: Path, no_cache: bool) -> image.BuildResult:
    context = make_context(OUT_DIR / "context")
    return image.oci_build(
        context,
        dest,
        inputs["source_date_epoch"],
        {},
        labels(inputs),
        no_cache=no_cache,
        dockerfile=DOCKERFILE,
        what="toolchain",
    )


def _cached(inputs: dict[str, Any]) -> image.BuildResult | None:
    """The last build, if it came from these inputs and the engine still holds it."""
    try:
        last = json.loads(LAST_BUILD.read_text(encoding="utf-8"))
        oci = ocidiff.open_oci(OCI_TAR)
    except (OSError, ValueError, ToolError):
        return None
    if (last.get("inputs"), last.get("labels")) != (inputs, labels(inputs)) or last.get(
        "digest"
    ) != oci.digest:
        return None
    if image_id(oci.digest) != oci.digest:
        return None
    return image.BuildResult(oci.digest, oci, 0.0, cached=True)


def build(no_cache: bool = False) -> image.BuildResult:
    """Build (or reuse) the toolchain and load it as lockstep-toolchain:latest."""
    require_engine()
    inputs = current_inputs()
    if not no_cache and (cached := _cached(inputs)) is not None:
        log(f"toolchain: inputs unchanged since the last build of {rel(OCI_TAR)} (up to date)")
        return cached
    result = _build(inputs, OCI_TAR, no_cache)
    image.load_and_tag(result, [f"{REPOSITORY}:latest"])
    common.write_json_atomic(
        LAST_BUILD, {"digest": result.digest, "inputs": inputs, "labels": labels(inputs)}
    )
    log(f"toolchain: built in {result.seconds:.1f}s, loaded as {REPOSITORY}:latest ({result.digest})")
    return result


def differs_from_lock(digest: str, lock: dict[str, Any]) -> InputError:
    diffs = input_differences(lock["inputs"], current_inputs())
    why = f"; the inputs differ: {'; '.join(diffs)}" if diffs else "; all inputs are equal (another builder?)"
    return InputError(
        f"the toolchain builds to {digest}, but {rel(LOCK)} locks {lock['digest']}{why}; "
        "`make lock-toolchain` records an intended change"
    )


def cmd_build(args: argparse.Namespace) -> int:
    result = build(no_cache=args.no_cache)
    lock = validate_lock(read_json(LOCK, "toolchain lock")) if LOCK.is_file() else None
    if lock is not None and lock["digest"] != result.digest:
        raise differs_from_lock(result.digest, lock)
    print(result.digest)
    return 0


def cmd_ensure(args: argparse.Namespace) -> int:
    """The locked toolchain in the engine: a no-op when it is there, else a build from the store."""
    require_engine()
    digest = locked_digest()
    if image_id(digest) == digest:
        log(f"toolchain: {digest} is in the engine (= {rel(LOCK)})")
    else:
        args.no_cache = False
        cmd_build(args)
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    result = build(no_cache=args.no_cache)
    common.write_json_atomic(
        LOCK,
        {
            "comment": "Written by `make lock-toolchain`; checked by `make verify-toolchain`. Do not edit.",
            "digest": result.digest,
            "inputs": current_inputs(),
            "built_with": image.builder_identity(),  # information, not an input
        },
    )
    log(f"toolchain: wrote {rel(LOCK)}")
    print(result.digest)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    lock = validate_lock(read_json(LOCK, "toolchain lock"))
    require_engine()
    result = _build(current_inputs(), OUT_DIR / "verify.oci.tar", no_cache=True)
    if result.digest != lock["digest"]:
        raise differs_from_lock(result.digest, lock)
    log(f"toolchain: verified: a --no-cache rebuild gives {result.digest} = {rel(LOCK)}")
    print(result.digest)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    lock = validate_lock(read_json(LOCK, "toolchain lock"))
    diffs = input_differences(lock["inputs"], current_inputs())
    if diffs:
        raise InputError(
            f"{rel(LOCK)} was recorded from other inputs: "
            + "; ".join(diffs)
            + "; `make lock-toolchain` records an intended change"
        )
    log(f"toolchain: {rel(LOCK)} inputs match the tree ({lock['digest']})")
    return 0
