"""The one reader of `dvc.lock`, and the only way to load an artifact: its bytes read once and checked
against the md5 dvc.lock records (and, for a pickle, the sha256 `models/model.sha256` records)
before anything parses or unpickles them."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import yaml

from contract.errors import ContractError
from contract.paths import DVC_LOCK_FILE, MODEL_SHA256_FILE

# libyaml's safe loader parses dvc.lock ~10x faster than the pure-Python one (start-up time).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_FILE_MD5 = re.compile(r"[0-9a-f]{32}")
_SHA256_LINE = re.compile(r"(?P<hex>[0-9a-f]{64}) [ *](?P<path>\S.*)")
_LOCKED_MD5 = re.compile(r"[0-9a-f]{32}(\.dir)?")  # DVC marks a directory's md5 with ".dir"


def md5_hex(data: bytes) -> str:
    """Plain md5 of bytes: what DVC 3 records for a file."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_lines(files: dict[Path, bytes]) -> str:
    """`sha256sum` output for `files` (path as recorded -> bytes), sorted by path."""
    return "".join(f"{sha256_hex(data)}  {path.as_posix()}\n" for path, data in sorted(files.items()))


def sha256_file(lock_path: Path) -> Path:
    """Where the pickles' sha256s are, beside `lock_path` (paths in both are relative to its directory)."""
    return lock_path.parent / MODEL_SHA256_FILE


def recorded_sha256(sums_path: Path, base: Path, target: Path) -> str:
    """The sha256 that `sums_path` (sha256sum format, paths relative to `base`) records for
    `target`; one line naming the file when it is missing or malformed."""
    text = read_bytes(sums_path, "sha256 record").decode("utf-8", "replace")
    base = base.resolve()
    wanted = target.resolve()
    for number, line in enumerate(text.splitlines(), 1):
        m = _SHA256_LINE.fullmatch(line)
        if not m:
            raise ContractError(f"{sums_path}:{number}: not a `sha256sum` line (<64 hex>  <path>)")
        if (base / m["path"]).resolve() == wanted:
            return m["hex"]
    raise ContractError(f"{sums_path} has no sha256 for {target}: refusing to unpickle an unrecorded file")


def read_bytes(path: Path, what: str) -> bytes:
    """Read a whole file or raise a one-line error naming it."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ContractError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what, on one line: PyYAML's own message spans several."""
    mark = getattr(exc, "problem_mark", None)
    if mark is None:  # e.g. bytes that are not UTF-8
        return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {getattr(exc, 'problem', None) or 'invalid'}"


def load_dvc_lock(lock_path: Path = DVC_LOCK_FILE) -> dict[str, Any]:
    """Read and parse dvc.lock (parse_dvc_lock)."""
    return parse_dvc_lock(read_bytes(lock_path, "DVC lock file"), lock_path)


def parse_dvc_lock(text: bytes | str, lock_path: Path) -> dict[str, Any]:
    """Parse a dvc.lock text, refusing (one line naming `lock_path` and the field) anything but a
    mapping of stages whose `outs` are lists of {path, md5?}: every reader can trust that shape."""
    try:
        doc = yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise ContractError(f"{lock_path} is not valid YAML ({_yaml_problem(exc)})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("stages"), dict):
        raise ContractError(f"{lock_path} has no 'stages' mapping")
    for name, stage in doc["stages"].items():
        where = f"{lock_path}: stages.{name}"
        if not isinstance(stage, dict):
            raise ContractError(f"{where} is not a mapping")
        outs = stage.get("outs", [])  # a stage may have no outputs
        if not isinstance(outs, list):
            raise ContractError(f"{where}.outs is not a list")
        for i, out in enumerate(outs):
            if not isinstance(out, dict) or not isinstance(out.get("path"), str):
                raise ContractError(f"{where}.outs[{i}] has no path")
            # md5 may be absent (DVC records an etag for some cloud outputs); present, it must be one.
            md5 = out.get("md5")
            if md5 is not None and not (isinstance(md5, str) and _LOCKED_MD5.fullmatch(md5)):
                raise ContractError(f"{where}.outs[{i}] ({out['path']}): md5 {md5!r} is not an md5")
    return doc


def locked_md5(lock: dict[str, Any], lock_path: Path, target: Path) -> str:
    """The md5 dvc.lock records for the file `target` as a stage output (outs paths are relative
    to the lock). `lock` comes from load_dvc_lock, which checked its shape."""
    wanted = target.resolve()
    base = lock_path.resolve().parent
    for name, stage in lock["stages"].items():
        for i, out in enumerate(stage.get("outs", [])):
            if (base / out["path"]).resolve() == wanted:
                md5 = out.get("md5")
                if not isinstance(md5, str) or not _FILE_MD5.fullmatch(md5):
                    raise ContractError(
                        f"{lock_path}: stages.{name}.outs[{i}] ({out['path']}) has no file md5 "
                        f"(found {md5!r}): refusing {target}"
                    )
                return md5
    raise ContractError(f"{lock_path} has no entry for {target}: refusing an untracked file")


def locked_outs(lock: dict[str, Any]) -> dict[str, str]:
    """path -> md5 of every stage output that dvc.lock records (paths as written in the lock);
    `lock` comes from load_dvc_lock."""
    return {
        out["path"]: out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
        if "md5" in out
    }


def verified_bytes(path: Path, lock: dict[str, Any], lock_path: Path, what: str) -> tuple[bytes, str]:
    """Read a file once and return its bytes and md5 if they match dvc.lock.

    The caller must use the returned bytes (not re-read the path): what was hashed is what is used.
    Unpickle a model only from these bytes: a poisoned DVC remote must not get to run code.
    """
    expected = locked_md5(lock, lock_path, path)
    data = read_bytes(path, what)
    actual = md5_hex(data)
    if actual != expected:
        raise ContractError(
            f"{what} {path} has md5 {actual} but {lock_path} records {expected}: refusing to load it"
        )
    return data, actual


def verified_pickle_bytes(path: Path, lock: dict[str, Any], lock_path: Path, what: str) -> tuple[bytes, str]:
    """verified_bytes, and then the sha256 `models/model.sha256` (beside `lock_path`) records: the
    only bytes a pickle may be loaded from. An md5 twin passes the first check and not this one."""
    data, md5 = verified_bytes(path, lock, lock_path, what)
    sums = sha256_file(lock_path)
    expected = recorded_sha256(sums, lock_path.parent, path)
    actual = sha256_hex(data)
    if actual != expected:
        raise ContractError(
            f"{what} {path} has sha256 {actual} but {sums} records {expected} "
            f"(its md5 {md5} does match {lock_path}: an md5 collision?): refusing to unpickle it"
        )
    return data, md5


def load_verified_pickle(path: Path, lock_path: Path = DVC_LOCK_FILE, what: str = "model") -> tuple[Any, str]:
    """Unpickle `path` only if its bytes have the md5 dvc.lock records for it and the sha256
    `models/model.sha256` records; return the object and that md5. Every pickle loaded outside the
    service goes through here, so a poisoned DVC remote, a swapped file or an md5 twin is refused
    (one line naming the file and both hashes) before any of its code can run. The bytes hashed
    are the bytes unpickled: the file is read once."""
    data, md5 = verified_pickle_bytes(path, load_dvc_lock(lock_path), lock_path, what)
    import joblib  # not at import: the service's ONNX path has no joblib

    try:
        return joblib.load(io.BytesIO(data)), md5
    except Exception as exc:  # the locked bytes, but not loadable here (a library missing or too old)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ContractError(
            f"{what} {path} matches {lock_path} but cannot be unpickled: {exc.__class__.__name__}: {first}"
        ) from None
