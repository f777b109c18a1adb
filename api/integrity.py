"""Checks that run before a model artifact is used: the md5 dvc.lock records for it."""

import hashlib
from pathlib import Path
from typing import Any

import yaml

# libyaml's safe loader parses dvc.lock ~10x faster than the pure-Python one (start-up time).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ModelIntegrityError(RuntimeError):
    """The model cannot be trusted or used; the message is one line saying why."""


def md5_hex(data: bytes) -> str:
    """Plain md5 of bytes: what DVC 3 records for a file."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def read_bytes(path: Path, what: str) -> bytes:
    """Read a whole file or raise a one-line integrity error naming it."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelIntegrityError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def load_dvc_lock(lock_path: Path) -> dict[str, Any]:
    """Parse dvc.lock, refusing anything that is not a mapping of stages."""
    try:
        doc = yaml.load(read_bytes(lock_path, "DVC lock file"), Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise ModelIntegrityError(f"{lock_path} is not valid YAML: {exc.__class__.__name__}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("stages"), dict):
        raise ModelIntegrityError(f"{lock_path} has no 'stages' mapping")
    return doc


def locked_md5(lock: dict[str, Any], lock_path: Path, target: Path) -> str:
    """The md5 dvc.lock records for `target` as a stage output; outs paths are relative to the lock."""
    wanted = target.resolve()
    base = lock_path.resolve().parent
    for stage in lock["stages"].values():
        if not isinstance(stage, dict):
            continue
        for out in stage.get("outs") or []:
            if not isinstance(out, dict) or "path" not in out:
                continue
            if (base / str(out["path"])).resolve() == wanted:
                md5 = out.get("md5")
                if not isinstance(md5, str) or len(md5) != 32:
                    raise ModelIntegrityError(f"{lock_path} entry for {target} has no md5")
                return md5
    raise ModelIntegrityError(f"{lock_path} has no entry for {target}: refusing an untracked file")


def verified_bytes(path: Path, lock: dict[str, Any], lock_path: Path, what: str) -> tuple[bytes, str]:
    """Read a file once and return its bytes and md5 if they match dvc.lock.

    The caller must use the returned bytes (not re-read the path): what was hashed is what is used.
    """
    expected = locked_md5(lock, lock_path, path)
    data = read_bytes(path, what)
    actual = md5_hex(data)
    if actual != expected:
        raise ModelIntegrityError(
            f"{what} {path} has md5 {actual} but {lock_path} records {expected}: refusing to load it"
        )
    return data, actual
