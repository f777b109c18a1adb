"""The requirement locks: which there are and how each is compiled (`make lock`: `python -m imagetool
locks compile`), static rules, and "does the .txt still match what its .in resolves to" (`make
check-lock`: `python -m imagetool locks check [LOCK.txt ...]`). The Makefile names no lock and no
pip-compile flag: this module owns both lists.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from imagetool import layout
from imagetool.common import InputError

# Flags every lock is compiled with, by `locks compile` and by the check alike.
PIP_COMPILE_FLAGS = (
    "--quiet",
    "--generate-hashes",
    "--allow-unsafe",
    "--strip-extras",
    "--no-emit-index-url",
    "--no-emit-find-links",
)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
_FORBIDDEN = (
    "--index-url",
    "--extra-index-url",
    "--find-links",
    "-i ",
    "-f ",
    "--trusted-host",
    "file://",
    "/opt/",
)


@dataclass(frozen=True)
class LockSpec:
    """One requirement lock: the .txt (its .in beside it), whether `make lock` re-resolves it to the
    newest versions its .in allows (else its pins follow the constraint it names, requirements.txt),
    and whether `make check-lock` checks it (the bench peer's lock is resolved on its own)."""

    path: str
    upgrade: bool
    checked: bool = True


# Every requirement lock, in the order `make lock` compiles them: the constraint first.
LOCKS = (
    LockSpec(layout.TRAIN_LOCK, upgrade=True),
    LockSpec(layout.DEV_LOCK, upgrade=True),
    *(LockSpec(name, upgrade=False) for name in layout.SERVE_LOCKS),
    LockSpec(layout.BUILD_LOCK, upgrade=True),
    LockSpec(layout.PEER_LOCK, upgrade=False, checked=False),  # the bench's peer, own venv
)
CHECKED = tuple(spec.path for spec in LOCKS if spec.checked)


class LockError(InputError):
    """A lock file breaks a rule; the message names the file and line."""


@dataclass(frozen=True)
class Requirement:
    name: str  # normalised (PEP 503)
    version: str
    hashes: frozenset[str]  # sha256 hex digests


def normalize(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(path: Path) -> dict[str, Requirement]:
    """Parse a lock file (see parse_lock_text)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise LockError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_lock_text(text, str(path))


def parse_lock_text(text: str, source: str) -> dict[str, Requirement]:
    """Parse a pip-compile --generate-hashes lock, enforcing: every requirement pinned with ==,
    at least one sha256 hash each, no option lines (index, find-links, -e, ...) or host paths."""
    reqs: dict[str, Requirement] = {}
    # Join backslash continuations so each requirement is one logical line.
    logical: list[tuple[int, str]] = []
    buf, start = "", 0
    for no, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not buf:
            start = no
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        logical.append((start, (buf + stripped).strip()))
        buf = ""
    for no, line in logical:
        lowered = line.lower()
        for bad in _FORBIDDEN:
            if (
                lowered.startswith(bad)
                or f" {bad}" in lowered
                or (bad in {"file://", "/opt/"} and bad in lowered)
            ):
                raise LockError(f"{source}:{no}: forbidden index/host line: {line[:80]!r}")
        if line.startswith("-"):
            raise LockError(f"{source}:{no}: option line not allowed in a lock: {line.split()[0]}")
        match = _PIN.match(line)
        if not match:
            raise LockError(f"{source}:{no}: not pinned with ==: {line[:80]!r}")
        hashes = frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
        if not hashes:
            raise LockError(f"{source}:{no}: {match.group(1)} has no sha256 hash (no --hash=sha256 entries)")
        name = normalize(match.group(1))
        reqs[name] = Requirement(name=name, version=match.group(2), hashes=hashes)
    if not reqs:
        raise LockError(f"{source}: no requirements")
    return reqs


def compile_lock(lock: Path) -> Path:
    """Re-run pip-compile for `lock`'s .in, starting from a copy of `lock` (so existing pins are
    preferred, as `make lock` without --upgrade would), and return the fresh file."""
    source = lock.with_suffix(".in")
    if not source.exists():
        raise LockError(f"{lock}: no {source.name} beside it")
    pip_compile = Path(sys.executable).with_name("pip-compile")
    # Same directory, so relative -r/-c lines and "# via" annotations come out identical.
    tmp = Path(tempfile.mkdtemp(prefix=".lockcheck-", dir=lock.parent))
    fresh = tmp / lock.name
    shutil.copyfile(lock, fresh)
    proc = subprocess.run(
        [str(pip_compile), *PIP_COMPILE_FLAGS, "--output-file", str(fresh), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        last = (proc.stderr.strip().splitlines() or ["pip-compile failed"])[-1]
        raise LockError(f"{source}: does not resolve: {last}")
    return fresh


def diff_locks(expected: dict[str, Requirement], actual: dict[str, Requirement]) -> list[str]:
    """Human-readable differences between a committed lock and a fresh resolution."""
    out = []
    for name in sorted(expected.keys() | actual.keys()):
        old, new = actual.get(name), expected.get(name)
        if old is None and new is not None:
            out.append(f"missing {name}=={new.version}")
        elif new is None and old is not None:
            out.append(f"extra {name}=={old.version}")
        elif old and new and old.version != new.version:
            out.append(f"{name}: {old.version} -> {new.version}")
        elif old and new and set(old.hashes) != set(new.hashes):
            out.append(f"{name}=={old.version}: hashes differ")
    return out


def constraint_files(source: Path) -> list[Path]:
    """The `-c FILE` constraint files a .in file names, relative to it."""
    out = []
    for line in source.read_text().splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) == 2 and parts[0] in ("-c", "--constraint"):
            out.append(source.parent / parts[1])
    return out


def constraint_problems(lock: Path, constraint: Path) -> list[str]:
    """Packages in both locks must have the same version and the same wheel hashes."""
    ours, theirs = parse_lock(lock), parse_lock(constraint)
    problems = []
    for name in sorted(ours.keys() & theirs.keys()):
        a, b = ours[name], theirs[name]
        if a.version != b.version:
            problems.append(f"{name}=={a.version} but {constraint.name} has {b.version}")
        elif a.hashes != b.hashes:
            problems.append(f"{name}=={a.version}: hashes differ from {constraint.name}'s")
    return problems


def check(lock: Path) -> None:
    """Raise LockError naming `lock` if it breaks a rule, no longer matches its .in, or disagrees
    with a lock its .in is constrained by (`-c requirements.txt`)."""
    committed = parse_lock(lock)
    fresh_path = compile_lock(lock)
    try:
        fresh = parse_lock(fresh_path)
    finally:
        shutil.rmtree(fresh_path.parent, ignore_errors=True)
    problems = diff_locks(fresh, committed)
    if problems:
        raise LockError(
            f"{lock}: out of date with {lock.with_suffix('.in').name} "
            f"(run `make lock`): {'; '.join(problems)}"
        )
    for constraint in constraint_files(lock.with_suffix(".in")):
        problems = constraint_problems(lock, constraint)
        if problems:
            raise LockError(
                f"{lock}: disagrees with {constraint.name} (run `make lock`): {'; '.join(problems)}"
            )


def check_all(paths: list[Path]) -> int:
    """`python -m imagetool locks check LOCK...`: each lock checked and said; 1 if any fails."""
    failed = False
    for path in paths:
        try:
            check(path)
            print(f"ok: {path}")
        except LockError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


def compile_locks(root: Path, only: tuple[str, ...] = (), upgrade: bool = True) -> int:
    """`python -m imagetool locks compile [--no-upgrade] [LOCK.txt ...]`: pip-compile each lock (all
    of LOCKS by default) from its .in, with PIP_COMPILE_FLAGS and --upgrade where its spec says so.
    `upgrade=False` (`make lock UPGRADE=0`) keeps every existing pin: adding a package to an .in then
    adds it (and what it needs) and moves nothing else."""
    specs = [spec for spec in LOCKS if not only or spec.path in only]
    unknown = sorted(set(only) - {spec.path for spec in LOCKS})
    if unknown:
        raise LockError(f"{unknown[0]}: not a lock of this project ({', '.join(s.path for s in LOCKS)})")
    pip_compile = Path(sys.executable).with_name("pip-compile")
    for spec in specs:
        lock = root / spec.path
        upgrading = spec.upgrade and upgrade
        flags = ["--upgrade"] if upgrading else []
        command = [str(pip_compile), *PIP_COMPILE_FLAGS, *flags, "--output-file", spec.path]
        proc = subprocess.run([*command, str(Path(spec.path).with_suffix(".in"))], cwd=root, check=False)
        if proc.returncode != 0:
            raise LockError(f"{lock.with_suffix('.in')}: pip-compile failed (exit {proc.returncode})")
        print(f"locks: compiled {spec.path}" + (" (--upgrade)" if upgrading else ""), flush=True)
    return 0
