"""Paths, hashing and process helpers shared by the imagetool commands."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from imagetool import layout

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / layout.BUILD


class ToolError(Exception):
    """A failure explained for a person: printed without a traceback, exit status 1."""


class InputError(ToolError):
    """Bad input (a file, field or value the user or the host gave): exit status 2."""


def rel(path: Path) -> str:
    """Path as shown in messages: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def temporary_beside(path: Path) -> Path:
    """A fresh name beside `path` for a file that will replace it: unique per call, so two writers
    (two make runs, two threads) never share one temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


def _fsync(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: Path, path: Path) -> None:
    """Rename a finished `tmp` over `path`: its bytes reach the disk first, and the rename after
    (a crash leaves the old file or the new one, never an empty or half-written one)."""
    try:
        _fsync(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent, os.O_RDONLY | os.O_DIRECTORY)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path`; readers never see a half-written file, crashes never leave one."""
    tmp = temporary_beside(path)
    tmp.write_bytes(data)
    replace_durably(tmp, path)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write sorted, indented JSON; readers never see a half-written file."""
    write_bytes_atomic(path, canonical_json(data).encode("utf-8"))


def _read(path: Path, what: str, parse: Callable[[str], Any], bad: type[Exception], says: str) -> Any:
    try:
        return parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ToolError(f"{rel(path)}: missing ({what})") from None
    except bad as e:
        raise ToolError(f"{rel(path)}: {says}: {e}") from None


def read_json(path: Path, what: str) -> Any:
    return _read(path, what, json.loads, json.JSONDecodeError, f"not valid JSON ({what})")


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file, or a ToolError naming it when it is missing or invalid."""
    data: dict[str, Any] = _read(path, what, tomllib.loads, tomllib.TOMLDecodeError, "invalid TOML")
    return data


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    capture: bool = False,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    try:
        return subprocess.run(
            list(cmd),
            env=full_env,
            cwd=cwd,
            check=check,
            text=True,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
        )
    except FileNotFoundError:
        raise ToolError(f"{cmd[0]}: not installed (see `make engine`)") from None
    except subprocess.CalledProcessError as e:
        detail = (e.stderr or "").strip()[-2000:] if capture else ""
        raise ToolError(f"command failed ({e.returncode}): {' '.join(cmd)}\n{detail}".rstrip()) from None
