"""Build the service image from locked inputs, record its digest, and prove it rebuilds.

    python -m imagetool image build [--no-cache] [--no-load]   # check inputs, build, load, tag
    python -m imagetool image lock                             # build and write image.lock
    python -m imagetool image verify                           # --no-cache rebuild == image.lock?
    python -m imagetool image check                            # image.lock inputs == the tree (no build)
    python -m imagetool image inputs                           # print the current inputs as JSON

Each takes --platform linux/amd64, linux/arm64 or all (default: $PLATFORM, else all). image.lock
keeps linux/amd64's record at its top (as before arm64 existed), the other platforms' records
under `platforms`, and under `index` the OCI image index over every platform's manifest: its
digest is a function of theirs, so it is as reproducible as they are.

Every input is checked before BuildKit starts; a failure names the file and nothing is built,
loaded, tagged or recorded. The digest printed is the OCI manifest digest: what `docker push`
uploads and deployments pin.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import contract
from imagetool import common, engine, layout, platforms
from imagetool.common import ROOT, ToolError, file_digest, log, read_json, rel, run
from imagetool.images import ocidiff, recipe
from imagetool.images.image_lock import IMAGE_LOCK, INPUT_MEANING, ImageLock, computed_index, tree_sha256
from imagetool.inputs import base, wheels
from imagetool.platforms import AMD64, Platform

OUT_DIR = common.BUILD / "image"
REPOSITORY = "lockstep"
PLATFORM = AMD64.name


def oci_tar(plat: Platform = AMD64) -> Path:
    return OUT_DIR / plat.oci_name


def last_build(plat: Platform = AMD64) -> Path:
    return OUT_DIR / f"last-build{plat.suffix}.json"


def latest_tag(plat: Platform = AMD64) -> str:
    return f"{REPOSITORY}:latest{plat.suffix}"


# zstd: as reproducible as gzip here and 3-4x faster to write, which dominates a cold build.
COMPRESSION = "zstd"

# What the build context must hold besides the model files (the .dockerignore allow-list says the same).
REQUIRED_FILES = [
    "Dockerfile",
    ".dockerignore",
    layout.BUILD_LOCK,
    "dvc.lock",
    "api/__init__.py",
    "api/__main__.py",
    "api/healthcheck.py",
    "contract/__init__.py",
    "imagetool/minimal_root.py",
]
# Files whose bytes are hashed into image.lock's source tree, besides the model files the image
# ships (the pickle has its own md5 input; the base tarball and wheels are covered by their locks).
SOURCE_FILES = [
    "Dockerfile",
    ".dockerignore",
    "dvc.lock",
    layout.BUILD_LOCK,
    layout.MINIMAL_ROOT.as_posix(),
]
SOURCE_DIRS = ["api", "contract"]


def required_files(root: Path) -> list[str]:
    """Every file the build context must hold for this model."""
    return [*REQUIRED_FILES, recipe.serve_lock(root), *recipe.model_files(root)]


# --- inputs -----------------------------------------------------------------------------------


def _context_files(root: Path, folder: str) -> list[str]:
    """Files under ``folder`` that .dockerignore lets into the context."""
    out = []
    for p in sorted((root / folder).rglob("*")):
        parts = p.relative_to(root).parts
        if p.is_dir() or "__pycache__" in parts or p.suffix in {".pyc", ".pyo", ".pyd"}:
            continue
        if any(part.startswith(".") for part in parts):
            continue
        out.append(p.relative_to(root).as_posix())
    return out


def source_files(root: Path = ROOT) -> dict[str, str]:
    files = [*SOURCE_FILES, *(f for f in recipe.model_files(root) if f != "models/model.joblib")]
    for d in SOURCE_DIRS:
        files += _context_files(root, d)
    return {f: file_digest(root / f) for f in sorted(files) if (root / f).is_file()}


def builder_identity(env: dict[str, str] | None = None) -> dict[str, str]:
    """Engine, containerd and buildx versions. Recorded as information, not as an input: the
    Dockerfile's final stage avoids what BuildKit releases render differently, so any builder
    that gives the locked digest is accepted."""
    try:
        v = json.loads(
            run(["docker", "version", "--format", "{{json .Server}}"], capture=True, env=env).stdout
        )
    except ToolError as e:
        raise ToolError(f"no Docker engine answers (run `make engine`): {e}") from None
    comps = {c["Name"].lower(): c["Version"] for c in v.get("Components") or []}
    buildx = run(["docker", "buildx", "version"], capture=True, env=env).stdout.split()
    return {
        "engine": str(v.get("Version", "unknown")),
        "containerd": comps.get("containerd", "unknown"),
        "buildx": buildx[1] if len(buildx) > 1 else "unknown",
    }


DESCRIPTION = "Prediction service; digest is a function of the locked inputs"


def image_labels(inputs: dict[str, Any]) -> dict[str, str]:
    """The image's labels, passed with `--label` (a LABEL instruction's history text varies by
    builder). Only input hashes: no dates, hosts or builder versions."""
    return {
        "org.opencontainers.image.title": "lockstep",
        "org.opencontainers.image.description": DESCRIPTION,
        "io.lockstep.model.md5": inputs["model_md5"],
        "io.lockstep.requirements.sha256": inputs["requirements_sha256"],
        "io.lockstep.base-lock.sha256": inputs["base_lock_sha256"],
    }


def current_inputs(root: Path = ROOT, plat: Platform = AMD64) -> dict[str, Any]:
    blk_path = plat.base_lock(root)
    blk = base.load_lock(plat, root)
    sources = source_files(root)
    inputs: dict[str, Any] = {
        "base_lock_sha256": file_digest(blk_path),
        "requirements_sha256": file_digest(root / recipe.serve_lock(root)),
        "model_md5": file_digest(root / "models/model.joblib", "md5"),
        "source_tree_sha256": tree_sha256(sources),
        "sources": sources,
        "source_date_epoch": blk.source_date_epoch,
        "platform": plat.name,
        "compression": COMPRESSION,
    }
    return inputs


# --- preflight: every input checked before BuildKit starts ------------------------------------


def _git(root: Path, *args: str) -> list[str] | None:
    try:
        p = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    return p.stdout.splitlines() if p.returncode == 0 else None


def untracked_context_files(root: Path) -> list[str]:
    """Context files git does not track, when git tracks the context at all (else [])."""
    tracked = _git(root, "ls-files", "--", *SOURCE_DIRS)
    if not tracked:
        return []
    tracked_set = set(tracked)
    return [f for d in SOURCE_DIRS for f in _context_files(root, d) if f not in tracked_set]


def export_problems(root: Path = ROOT) -> list[str]:
    """serving.json must name the shipped pickle and graph (the service refuses it otherwise)."""
    try:
        serving = json.loads((root / "models/serving.json").read_text(encoding="utf-8"))
        source = serving["model"]["md5"]
        graph = (serving.get("onnx") or {}).get("md5")
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [f"models/serving.json: not a serving plan ({e.__class__.__name__}); run `dvc repro`"]
    problems = []
    model = file_digest(root / "models/model.joblib", "md5")
    if source != model:
        problems.append(
            f"models/serving.json: made from a model with md5 {source}, not from "
            f"models/model.joblib ({model}); run `dvc repro`"
        )
    onnx = file_digest(root / "models/model.onnx", "md5")
    if graph is not None and graph != onnx:
        problems.append(
            f"models/serving.json: names a graph with md5 {graph}, not models/model.onnx ({onnx}); "
            "run `dvc repro`"
        )
    return problems


def model_md5_problems(root: Path) -> list[str]:
    """Each model file the image takes whose md5 differs from dvc.lock's (read by the contract's
    reader, so training, serving and building agree on one shape of dvc.lock)."""
    problems: list[str] = []
    try:
        locked_by_path = contract.locked_outs(contract.load_dvc_lock(root / "dvc.lock"))
    except contract.ContractError as e:
        raise ToolError(str(e)) from None
    for path, stage in recipe.model_files(root).items():
        locked = locked_by_path.get(path)
        if locked is None:
            problems.append(f"dvc.lock: no md5 for {path} in stage {stage!r}")
            continue
        actual = file_digest(root / path, "md5")
        if actual != locked:
            problems.append(
                f"{path}: md5 {actual} does not match dvc.lock ({locked}); "
                "run `dvc repro` to rebuild it or `dvc pull` to fetch the locked one"
            )

    return problems


def preflight(root: Path = ROOT, allow_untracked: bool = False, plat: Platform = AMD64) -> None:
    plat.check_runnable()  # its RUN steps execute under qemu on another host
    problems: list[str] = []
    missing = [f for f in required_files(root) if not (root / f).is_file()]
    if missing:
        raise ToolError(
            "the build context is incomplete: "
            + ", ".join(f"{f} is missing" for f in missing)
            + (
                "; models come from `dvc repro` or `dvc pull`"
                if any(m.startswith("models/") for m in missing)
                else ""
            )
        )
    if not allow_untracked:
        for f in untracked_context_files(root):
            problems.append(f"{f}: not tracked by git but would go into the image (commit or delete it)")

    problems += model_md5_problems(root)
    problems += export_problems(root)

    blk_path = plat.base_lock(root)
    blk = base.load_lock(plat, root)
    tarball = plat.rootfs(root / "build")
    if not tarball.is_file():
        problems.append(f"{rel(tarball)}: missing; run `make base`")
    else:
        got = file_digest(tarball)
        if got != blk.tarball_sha256:
            problems.append(
                f"{rel(tarball)}: sha256 {got} does not match {rel(blk_path)} "
                f"(tarball.sha256 {blk.tarball_sha256}); run `make base` "
                f"(if {rel(blk_path)} was edited by hand, restore it)"
            )
    problems += wheels.check_wheels(wheels.load_locks(root), plat.wheels(root / "build"))
    if problems:
        raise ToolError("refusing to build:\n  " + "\n  ".join(problems))


# --- build ------------------------------------------------------------------------------------


@dataclass
class BuildResult:
    digest: str
    oci: ocidiff.OciImage
    seconds: float
    cached: bool = False  # the last build's output, reused because the inputs are unchanged


_STEP = re.compile(r"^#(\d+) (\[[^\]]+\] .*|exporting to .*)$")
_DONE = re.compile(r"^#(\d+) (DONE|CACHED)(?: ([0-9.]+)s)?$")


_OUTPUT = re.compile(r"^#(\d+) ")


def progress_lines(line: str, steps: dict[str, str], shown: set[str], what: str = "image") -> list[str]:
    """A concise version of BuildKit's plain progress: a line per Dockerfile step when it starts
    (or "cached"), and its time when it took a second or more; the rest goes to the log only."""
    if m := _STEP.match(line):
        steps.setdefault(m.group(1), m.group(2))
        return []
    m = _OUTPUT.match(line)
    if not m or m.group(1) not in steps or steps[m.group(1)].startswith("[internal]"):
        return []
    n, step = m.group(1), steps[m.group(1)]
    out = []
    if (done := _DONE.match(line)) and done.group(2) == "CACHED":
        return [] if n in shown else [f"{what}:   cached  {step[:100]}"]
    if n not in shown:
        shown.add(n)
        out.append(f"{what}:   {step[:110]}")
    if done and float(done.group(3) or 0) >= 1.0:
        label = step.split("] ", 1)[0] + "]" if step.startswith("[") else step
        out.append(f"{what}:   {label} done in {done.group(3)}s")
    return out


def _run_buildx(cmd: list[str], env: dict[str, str], log_file: Path, what: str) -> tuple[int, list[str]]:
    """Run buildx, writing its whole output to ``log_file`` and a concise version to stderr."""
    steps: dict[str, str] = {}
    shown: set[str] = set()
    output: list[str] = []
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with (
        log_file.open("w", encoding="utf-8") as f,
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            f.write(line)
            output.append(line.rstrip("\n"))
            for concise in progress_lines(output[-1], steps, shown, what):
                log(concise)
    return proc.returncode, output


def oci_build(
    context: Path,
    dest: Path,
    source_date_epoch: int,
    build_args: dict[str, str],
    labels: dict[str, str],
    *,
    no_cache: bool,
    dockerfile: Path | None = None,
    target: str | None = None,
    env: dict[str, str] | None = None,
    what: str = "image",
    context_changes: Callable[[], list[str]] | None = None,
    platform: str = PLATFORM,
) -> BuildResult:
    """`docker buildx build --network=none` of ``context`` into the OCI tarball ``dest``, timestamps
    rewritten to ``source_date_epoch``: the reproducible build every image of the project shares.
    ``context_changes`` names the inputs that differ after the build from what was hashed before."""
    # The engine that answers, if usable (else one line naming its version), through its context's
    # own `docker` driver builder: not a `docker buildx use` choice that would build elsewhere.
    builder = engine.require().context if env is None else "default"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = common.temporary_beside(dest)
    out = f"type=oci,dest={tmp},rewrite-timestamp=true,compression={COMPRESSION},force-compression=true"
    cmd = ["docker", "buildx", "build", "--builder", builder, "--network=none", "--provenance=false"]
    cmd += ["--sbom=false", "--platform", platform, "--progress=plain", "--output", out]
    if dockerfile is not None:
        cmd += ["--file", str(dockerfile)]
    if target is not None:
        cmd += ["--target", target]
    for key, value in {"SOURCE_DATE_EPOCH": str(source_date_epoch), **build_args}.items():
        cmd += ["--build-arg", f"{key}={value}"]
    for key, value in labels.items():
        cmd += ["--label", f"{key}={value}"]
    if no_cache:
        cmd.append("--no-cache")
    cmd.append(str(context))
    flag = " --no-cache" if no_cache else ""
    log(f"{what}: docker buildx build{flag} --platform {platform} (SOURCE_DATE_EPOCH={source_date_epoch})")
    t0 = time.monotonic()
    log_file = dest.with_name(dest.name.split(".")[0] + ".buildx.log")
    returncode, output = _run_buildx(cmd, {**os.environ, **(env or {})}, log_file, what)
    seconds = time.monotonic() - t0
    if returncode != 0:
        tmp.unlink(missing_ok=True)
        tail = "\n".join(output[-30:])
        raise ToolError(f"docker buildx build failed ({returncode}); log: {rel(log_file)}:\n{tail}")
    changed = context_changes() if context_changes else []
    if changed:
        tmp.unlink(missing_ok=True)
        raise ToolError(
            f"the build context changed during the build, so the {what} may hold either version; "
            "build again:\n  " + "\n  ".join(changed)
        )
    oci = ocidiff.open_oci(tmp)
    common.replace_durably(tmp, dest)
    oci.path = dest
    return BuildResult(oci.digest, oci, seconds)


def buildx(
    root: Path,
    inputs: dict[str, Any],
    dest: Path,
    no_cache: bool,
    env: dict[str, str] | None = None,
    plat: Platform = AMD64,
) -> BuildResult:
    """Build the OCI tarball ``dest``; ``env`` (e.g. DOCKER_HOST) selects another engine."""
    shipped = " ".join(Path(f).name for f in recipe.model_files(root))
    build_args = {"SERVE_LOCK": recipe.serve_lock(root), "MODEL_FILES": shipped}
    if plat is not AMD64:  # amd64 takes the Dockerfile's defaults: its build command is unchanged
        build_args["BASE_ROOTFS"] = plat.rootfs(Path("build")).as_posix()
        build_args["WHEELS"] = plat.wheels(Path("build")).as_posix()
    return oci_build(
        root,
        dest,
        inputs["source_date_epoch"],
        build_args,
        image_labels(inputs),
        no_cache=no_cache,
        env=env,
        context_changes=lambda: context_changes(root, inputs),
        platform=plat.name,
        what="image" if plat is AMD64 else f"image {plat.deb_arch}",
    )


def load_and_tag(result: BuildResult, tags: list[str]) -> None:
    out = run(["docker", "load", "--quiet", "-i", str(result.oci.path)], capture=True).stdout
    m = re.search(r"sha256:[0-9a-f]{64}", out)
    ref = m.group(0) if m else result.digest
    for tag in tags:
        run(["docker", "tag", ref, tag], capture=True)


def layer_records(oci: ocidiff.OciImage) -> list[dict[str, Any]]:
    return [
        {"digest": layer["digest"], "size": layer["size"], "created_by": ocidiff.layer_label(oci.config, i)}
        for i, layer in enumerate(oci.layers)
    ]


def up_to_date(inputs: dict[str, Any], load: bool, plat: Platform = AMD64) -> BuildResult | None:
    """The last build, if it came from exactly these inputs and is still there (and loaded).

    The digest is a function of the inputs, so equal inputs need no BuildKit run at all.
    """
    record, tar = last_build(plat), oci_tar(plat)
    if not (record.is_file() and tar.is_file()):
        return None
    try:
        last = json.loads(record.read_text(encoding="utf-8"))
        oci = ocidiff.open_oci(tar)
    except (ValueError, ToolError):
        return None
    if last.get("inputs") != inputs or last.get("digest") != oci.digest:
        return None
    if load:
        p = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", latest_tag(plat)],
            capture_output=True,
            text=True,
            check=False,
        )
        if p.stdout.strip() != oci.digest:
            return None
    return BuildResult(oci.digest, oci, 0.0, cached=True)


def build(
    root: Path = ROOT,
    no_cache: bool = False,
    load: bool = True,
    allow_untracked: bool = False,
    dest: Path | None = None,
    plat: Platform = AMD64,
) -> tuple[BuildResult, dict[str, Any]]:
    preflight(root, allow_untracked, plat)
    inputs = current_inputs(root, plat)
    dest = dest or oci_tar(plat)
    if not no_cache and dest == oci_tar(plat):
        cached = up_to_date(inputs, load, plat)
        if cached is not None:
            log(f"image: {plat.name} inputs unchanged since the last build of {rel(dest)} (up to date)")
            return cached, inputs
    result = buildx(root, inputs, dest, no_cache, plat=plat)
    if load:
        short = f"{REPOSITORY}:{result.digest.split(':')[1][:12]}"
        load_and_tag(result, [latest_tag(plat), short])
    common.write_json_atomic(
        last_build(plat),
        {
            "digest": result.digest,
            "seconds": round(result.seconds, 1),
            "inputs": inputs,
            "built_with": builder_identity(),
            "layers": layer_records(result.oci),
        },
    )
    return result, inputs


# --- lock and verify --------------------------------------------------------------------------


def context_changes(root: Path, inputs: dict[str, Any]) -> list[str]:
    """What differs now from the `inputs` hashed before the build started (sources, model, locks):
    BuildKit read the context at some moment in between, so any difference makes the build suspect."""
    plat = platforms.get(inputs.get("platform", PLATFORM))
    return input_differences(inputs, current_inputs(root, plat))


def input_differences(locked: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Which recorded inputs differ, each with what it means for the digest."""
    out = []
    for key, meaning in INPUT_MEANING.items():
        a, b = locked.get(key), now.get(key)
        if a == b:
            continue
        if key == "source_tree_sha256":
            sa, sb = locked.get("sources", {}), now.get("sources", {})
            files = [
                f"{f} ({'added' if f not in sa else 'removed' if f not in sb else 'changed'})"
                for f in sorted(sa.keys() | sb.keys())
                if sa.get(f) != sb.get(f)
            ]
            out.append(f"{key}: {meaning}: {', '.join(files)}")
        elif isinstance(a, dict) and isinstance(b, dict):
            parts = [
                f"{k} {a.get(k)} -> {b.get(k)}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)
            ]
            out.append(f"{key}: {meaning}: {', '.join(parts)}")
        else:
            out.append(f"{key}: {meaning}: {a} -> {b}")
    return out


def _builder_text(b: dict[str, str]) -> str:
    return ", ".join(f"{k} {b.get(k, 'unknown')}" for k in ("engine", "buildx", "containerd"))


def builder_difference(locked: Any, now: dict[str, str]) -> str:
    """One line comparing the builder image.lock records (information, not an input) with this one."""
    if not isinstance(locked, dict):
        return f"{rel(IMAGE_LOCK)} does not record its builder; this host builds with {_builder_text(now)}."
    if {k: locked.get(k) for k in now} == now:
        return f"Same builder as {rel(IMAGE_LOCK)} ({_builder_text(now)}): the layers below differ."
    return (
        f"The builder differs: {rel(IMAGE_LOCK)} was built with {_builder_text(locked)}; this host builds "
        f"with {_builder_text(now)}."
    )


def compare_with_lock(digest: str, lock_path: Path = IMAGE_LOCK, plat: Platform = AMD64) -> str:
    """One line saying whether `digest` is the one the committed image lock records."""
    try:
        locked = ImageLock.read(lock_path).record(plat)["digest"]
    except ToolError as e:
        return f"image: cannot compare with the image lock: {e}"
    name = "" if plat is AMD64 else f"{plat.name} "
    if digest == locked:
        return f"image: {name}digest equals {rel(lock_path)}"
    return (
        f"image: {name}digest differs from {rel(lock_path)} ({locked}): "
        "`make verify` says why; `make lock-image` records an intended change"
    )


def platform_record(result: BuildResult, inputs: dict[str, Any]) -> dict[str, Any]:
    """What image.lock keeps of one platform's build."""
    return {
        "digest": result.digest,
        "manifest_size": result.oci.manifest_size,
        "inputs": inputs,
        # Information only (not an input): which builder produced the locked digest.
        "built_with": builder_identity(),
        "layers": layer_records(result.oci),
    }


def cmd_build(args: argparse.Namespace) -> int:
    for plat in platforms.chosen(args.platform):
        result, _ = build(
            no_cache=args.no_cache, load=not args.no_load, allow_untracked=args.allow_untracked, plat=plat
        )
        if not result.cached:
            log(
                f"image: {plat.name} built in {result.seconds:.1f}s -> {rel(result.oci.path)}"
                + ("" if args.no_load else f", loaded as {latest_tag(plat)}")
            )
        # Informational: a work in progress may differ; `make verify` is the check that fails.
        log(compare_with_lock(result.digest, plat=plat))
        print(result.digest)
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    old = read_json(IMAGE_LOCK, "image lock") if IMAGE_LOCK.is_file() else {}
    old = old if isinstance(old, dict) else {}
    top = {k: old[k] for k in ("digest", "manifest_size", "inputs", "built_with", "layers") if k in old}
    others = dict(old.get("platforms") or {})
    for plat in platforms.chosen(args.platform):
        result, inputs = build(
            no_cache=args.no_cache, load=True, allow_untracked=args.allow_untracked, plat=plat
        )
        if plat is AMD64:
            top = platform_record(result, inputs)
        else:
            others[plat.name] = platform_record(result, inputs)
        print(result.digest)
    lock: dict[str, Any] = {"comment": "Written by `make lock-image`; checked by `make verify`. Do not edit."}
    lock |= top
    if others:
        lock["platforms"] = dict(sorted(others.items()))
    if (index := computed_index(lock)) is not None:
        lock["index"] = index
    if "stack" in old:
        lock["stack"] = old["stack"]  # the stack's images, locked by `make lock-stack-images`
    common.write_json_atomic(IMAGE_LOCK, lock)
    log(
        f"image: wrote {rel(IMAGE_LOCK)}" + (f" (index {lock['index']['digest']})" if "index" in lock else "")
    )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    lock = ImageLock.read()
    for plat in platforms.chosen(args.platform):
        record = lock.record(plat)
        diffs = input_differences(record["inputs"], current_inputs(ROOT, plat))
        if diffs:
            raise ToolError(
                f"{plat.name}: {rel(IMAGE_LOCK)} was recorded from other inputs:\n  "
                + "\n  ".join(diffs)
                + f"\nIf the change is intended: `make lock-image{plat.make_flag}`."
            )
        log(f"image: {rel(IMAGE_LOCK)} inputs match the tree for {plat.name} ({record['digest']})")
    if not lock.index_follows():
        raise ToolError(f"{rel(IMAGE_LOCK)}: `index` does not follow from the platforms' manifests (edited?)")
    return 0


def verify_platform(lock: ImageLock, plat: Platform, allow_untracked: bool) -> str:
    """A --no-cache rebuild of ``plat``; its digest if it equals ``lock``'s record, else a ToolError
    that names the platform and the input (or layer, or file) that differs."""
    record = lock.record(plat)
    flag = plat.make_flag
    preflight(allow_untracked=allow_untracked, plat=plat)
    inputs = current_inputs(ROOT, plat)
    diffs = input_differences(record["inputs"], inputs)
    if diffs:
        raise ToolError(
            f"{plat.name}: cannot reproduce {record['digest']}: "
            f"the inputs differ from {rel(IMAGE_LOCK)}:\n  "
            + "\n  ".join(diffs)
            + f"\nIf the change is intended: `make lock-image{flag}`."
        )
    tar = oci_tar(plat)
    reference = tar if tar.is_file() and ocidiff.open_oci(tar).digest == record["digest"] else None
    if reference is not None:  # keep it: `buildx` below writes elsewhere
        kept = OUT_DIR / f"reference{plat.suffix}.oci.tar"
        shutil.copyfile(reference, kept)
        reference = kept
    result = buildx(ROOT, inputs, OUT_DIR / f"verify{plat.suffix}.oci.tar", no_cache=True, plat=plat)
    if result.digest == record["digest"]:
        b = builder_identity()
        # Which builder reproduced the digest: information for whoever reads the CI logs/artefacts.
        common.write_json_atomic(
            OUT_DIR / f"verified{plat.suffix}.json", {"digest": result.digest, "built_with": b}
        )
        log(
            f"image: verified {plat.name}: a --no-cache rebuild gives {result.digest} = {rel(IMAGE_LOCK)} "
            f"(built with engine {b['engine']}, buildx {b['buildx']}, containerd {b['containerd']})"
        )
        return result.digest
    lines = [
        f"{plat.name}: rebuild gives {result.digest}, {rel(IMAGE_LOCK)} says {record['digest']}; "
        "all inputs are equal."
    ]
    lines.append(builder_difference(record.get("built_with"), builder_identity()))
    for i, (a, b) in enumerate(zip(record.get("layers", []), layer_records(result.oci), strict=False)):
        if a["digest"] != b["digest"]:
            lines.append(f"  layer {i} differs from the lock [{b['created_by']}]")
    if reference is not None:
        lines += list(
            ocidiff.iter_explanation(ocidiff.open_oci(reference), result.oci, OUT_DIR / "diffoscope")
        )
    else:
        # No artifact of the locked build here: rebuild once more to look for non-determinism.
        second = buildx(ROOT, inputs, OUT_DIR / f"verify2{plat.suffix}.oci.tar", no_cache=True, plat=plat)
        if second.digest == result.digest:
            lines.append(
                "Two --no-cache builds on this host agree with each other: it builds deterministically, "
                f"but not like the host that wrote {rel(IMAGE_LOCK)}. Compare there (its "
                f"{rel(tar)}), or `make lock-image{flag}` if this builder is the new reference."
            )
        else:
            lines.append("Two --no-cache builds on this host differ (non-determinism):")
            lines += list(ocidiff.iter_explanation(result.oci, second.oci, OUT_DIR / "diffoscope"))
    raise ToolError("\n".join(lines))


def cmd_verify(args: argparse.Namespace) -> int:
    lock = ImageLock.read()
    digests = [verify_platform(lock, plat, args.allow_untracked) for plat in platforms.chosen(args.platform)]
    if len(digests) == len(platforms.ALL) and lock.has_index:
        log(f"image: verified every platform: the index is {lock.index()['digest']}")
    print("\n".join(digests))
    return 0


def cmd_inputs(args: argparse.Namespace) -> int:
    plats = platforms.chosen(args.platform)
    data = (
        current_inputs(ROOT, plats[0])
        if len(plats) == 1
        else {p.name: current_inputs(ROOT, p) for p in plats}
    )
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    print()
    return 0
