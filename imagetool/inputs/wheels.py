"""The image's wheels: the locks that name them, and checking a folder of wheels against them
(`fetch` downloads them into the store and places them in build/wheels*).

    python -m imagetool wheels download [--platform P]  # from the store into build/wheels/, checked
    python -m imagetool wheels check [--platform P]     # one wheel with a locked hash per package

One set of locks for every platform (their hashes cover each wheel file of a pinned version,
x86_64 and aarch64 alike); linux/arm64's wheels sit in build/wheels-arm64 and store/arm64/wheels.

The image build runs with --network=none and installs these with --no-index --require-hashes.
The locks: requirements/serve.txt (the service's dependencies, installed into /opt/venv; pinned
to requirements.txt's versions and hashes) and requirements/build.txt (pip itself, run from its
wheel in a build stage only).
"""

from __future__ import annotations

from pathlib import Path

from imagetool import layout
from imagetool.common import ROOT, ToolError, file_digest, log, rel
from imagetool.inputs.locks import LockError, Requirement, normalize, parse_lock_text
from imagetool.platforms import AMD64, Platform

# Both serve locks: build/wheels holds every wheel either may need, and pip installs only what the
# lock the image takes (imagetool/images/recipe.py) names.
LOCK_NAMES = (*layout.SERVE_LOCKS, layout.BUILD_LOCK)
LOCKS = tuple(ROOT / name for name in LOCK_NAMES)
# What the store keeps: both serve locks (the image installs one of them, by the model's serving
# path), pip for the build, and the training toolchain's lock (imagetool/images/toolchain.py).
STORE_LOCK_NAMES = (*layout.SERVE_LOCKS, layout.BUILD_LOCK, layout.TRAIN_LOCK)

# The image's interpreter: Debian 12's CPython 3.11 on glibc 2.36 (x86_64 or aarch64).
PYTHON_VERSION = "3.11"
ABI = "cp311"
GLIBC_MINOR_MAX = 36


def store_lock_names(plat: Platform = AMD64) -> tuple[str, ...]:
    """The locks whose wheels the store keeps for ``plat``: the training toolchain runs on amd64
    only (one model for every platform), so other platforms keep the image's locks alone."""
    return STORE_LOCK_NAMES if plat is AMD64 else LOCK_NAMES


def parse_requirements(text: str, source: str = "requirements") -> list[Requirement]:
    """The entries of a hash-pinned lock (imagetool.inputs.locks enforces the rules), in file order."""
    try:
        return list(parse_lock_text(text, source).values())
    except LockError as exc:
        raise ToolError(str(exc)) from None


def wheel_name_version(filename: str) -> tuple[str, str]:
    """(normalised name, version) from a wheel file name (PEP 427)."""
    parts = filename[: -len(".whl")].split("-")
    if not filename.endswith(".whl") or len(parts) not in (5, 6):
        raise ValueError(f"not a wheel file name: {filename}")
    return normalize(parts[0]), parts[1]


def check_wheels(reqs: list[Requirement], folder: Path) -> list[str]:
    """Problems with ``folder`` as the wheel set for ``reqs``, each naming the file; [] if none."""
    problems: list[str] = []
    by_name = {r.name: r for r in reqs}
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("*.whl")):
        try:
            name, version = wheel_name_version(path.name)
        except ValueError as e:
            problems.append(f"{rel(path)}: {e}")
            continue
        req = by_name.get(name)
        if req is None:
            problems.append(f"{rel(path)}: not in the locks (stale; rerun `make wheels`)")
            continue
        if version != req.version:
            problems.append(f"{rel(path)}: version {version}, the lock pins {req.version}")
            continue
        digest = file_digest(path)
        if digest not in req.hashes:
            problems.append(
                f"{rel(path)}: sha256 {digest} is not one of the hashes locked for "
                f"{req.name}=={req.version} (corrupt or tampered; delete it and rerun `make wheels`)"
            )
        found.setdefault(name, []).append(path)
    for req in reqs:
        files = found.get(req.name, [])
        if not files:
            problems.append(f"{rel(folder)}: no wheel for {req.name}=={req.version} (run `make wheels`)")
        elif len(files) > 1:
            problems.append(f"{rel(folder)}: several wheels for {req.name}: {[p.name for p in files]}")
    return problems


def load_locks(root: Path = ROOT, names: tuple[str, ...] = LOCK_NAMES) -> list[Requirement]:
    """Every entry of the named locks under `root`, once per package (the serve locks share pins)."""
    reqs: dict[str, Requirement] = {}
    for name in names:
        try:
            for req in parse_requirements((root / name).read_text(encoding="utf-8"), name):
                if reqs.setdefault(req.name, req) != req:
                    raise ToolError(f"{name}: {req.name}=={req.version} differs from another lock's pin")
        except FileNotFoundError:
            raise ToolError(f"{name}: missing") from None
    return list(reqs.values())


def cmd_check(plat: Platform = AMD64) -> int:
    folder = plat.wheels()
    problems = check_wheels(load_locks(), folder)
    if problems:
        raise ToolError("wheels do not match the locks:\n  " + "\n  ".join(problems))
    log(f"wheels: {rel(folder)} matches {', '.join(rel(p) for p in LOCKS)}")
    return 0
