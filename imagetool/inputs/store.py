"""The store: every external input of the image and of its builder, kept by sha256.

    python -m imagetool store ensure [GROUP...]   # complete the store: dvc pull, else fetch (says which)
    python -m imagetool store check               # every file present and equal to the lock (no network)
    python -m imagetool store lock                # re-fill from the network; rewrite image/store.lock.json
    python -m imagetool store install-engine [--root DIR]   # engine .debs from the store, no mirror
    python -m imagetool store rederive-base       # rebuild the base from store/base/debs, offline
    python -m imagetool store status              # files, size, what is missing

Layout of ``store/`` (a DVC-tracked folder, ``store.dvc``: `dvc push` / `dvc pull` carry it):

    wheels/*.whl         every wheel of requirements/serve.txt, -serve-sklearn.txt and -build.txt
    base/rootfs.tar      the base root filesystem (image/base.lock.json's tarball.sha256)
    base/debs/*.deb      the Debian packages it is made of, at the locked versions: the rootfs is
                         re-derived from them offline (mmdebstrap) when it is missing
    engine/debs/*.deb    image/engine.toml's engine and tools, with every dependency a fresh host lacks
    builder2/debs/*.deb  image/engine.toml's second builder (unpacked, never installed: CI builds with it too)
    stack/debs/*.deb     image/stack.toml's HAProxy and Prometheus, with the dependencies the base lacks
    arm64/wheels/*.whl   the image's wheels for linux/arm64 (aarch64), same versions and locks
    arm64/base/...       the linux/arm64 base: rootfs.tar (image/base.arm64.lock.json) and its .debs

``image/store.lock.json`` records each file's sha256 and size. Builds read only from the store and
refuse a file whose sha256 differs, naming it and both hashes. The network (PyPI, the Debian mirror)
is used only by ``lock`` and to fill what a DVC remote could not provide; each command says which.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagetool import common, platforms
from imagetool.common import (
    BUILD,
    ROOT,
    InputError,
    ToolError,
    file_digest,
    log,
    read_json,
    rel,
    replace_durably,
    temporary_beside,
)
from imagetool.inputs import aptsources, base, wheels
from imagetool.inputs.apt import AptState, deb_file_version, state_folder

STORE = ROOT / "store"
STORE_DVC = ROOT / "store.dvc"
LOCK_NAME = Path("image/store.lock.json")  # relative: the SBOM and provenance read any tree's
LOCK = ROOT / LOCK_NAME
ENGINE_DEFINITION = ROOT / "image" / "engine.toml"
STACK_DEFINITION = ROOT / "image" / "stack.toml"
# Each platform but amd64 keeps its inputs in a group of its own (arm64/): imagetool/platforms.py.
GROUPS = (
    "wheels",
    "base",
    "engine",
    "builder2",
    "stack",
    *(p.deb_arch for p in platforms.ALL if p.store_prefix),
)
ROOTFS = "base/rootfs.tar"
# Set to refuse any network fetch (the offline tests and users who want proof set it).
OFFLINE_ENV = "LOCKSTEP_OFFLINE"


class StoreIncompleteError(InputError):
    """Locked files are missing and may not be fetched (offline): names them, exit 2."""


# --- the lock ---------------------------------------------------------------------------------


def group_of(path: str) -> str:
    return path.split("/", 1)[0]


# A platform's inputs in the store: amd64's at the top (wheels/, base/), another's under its name.
def rootfs_name(plat: platforms.Platform) -> str:
    return f"{plat.store_prefix}{ROOTFS}"


def rootfs_group(plat: platforms.Platform) -> str:
    return group_of(rootfs_name(plat))


def wheels_folder(plat: platforms.Platform) -> str:
    return f"{plat.store_prefix}wheels"


def debs_folder(plat: platforms.Platform) -> str:
    return f"{plat.store_prefix}base/debs"


def platform_of(name: str) -> platforms.Platform:
    """The platform a store path belongs to (amd64 unless it sits under another's folder)."""
    for plat in platforms.ALL:
        if plat.store_prefix and name.startswith(plat.store_prefix):
            return plat
    return platforms.AMD64


@dataclass(frozen=True)
class StoreLock:
    """image/store.lock.json: every stored file by its store path, with its sha256 and size, and
    the packages the host tools alone need (installed when the engine is already usable)."""

    files: dict[str, dict[str, Any]]  # store path -> {"sha256", "bytes"}
    tools_closure: tuple[str, ...]

    @classmethod
    def read(cls, path: Path = LOCK) -> StoreLock:
        """The lock at `path`; a malformed one is refused, naming it."""
        data = read_json(path, "store lock")
        files = data.get("files") if isinstance(data, dict) else None
        if not isinstance(files, dict) or not files:
            raise ToolError(f"{rel(path)}: `files` must map store paths to {{sha256, bytes}}")
        for name, entry in files.items():
            ok = (
                group_of(name) in GROUPS
                and ".." not in name.split("/")
                and isinstance(entry, dict)
                and re.fullmatch(r"[0-9a-f]{64}", str(entry.get("sha256", "")))
                and isinstance(entry.get("bytes"), int)
            )
            if not ok:
                raise ToolError(f"{rel(path)}: bad entry {name!r} (want a store path and sha256/bytes)")
        tools = data.get("tools_closure", [])
        if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
            raise ToolError(f"{rel(path)}: `tools_closure` must list package names")
        return cls(files, tuple(tools))


def load_engine_definition(path: Path = ENGINE_DEFINITION) -> dict[str, Any]:
    data = common.read_toml(path, "engine definition")
    for key in ("host_suite", "suite", "packages", "tools"):
        if key not in data:
            raise ToolError(f"{rel(path)}: missing key {key!r}")
    for spec in [*data["packages"], *data.get("second_builder", {}).get("packages", [])]:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*=\S+", spec):
            raise ToolError(f"{rel(path)}: packages: {spec!r} is not name=version")
    return data


def engine_pins(definition: dict[str, Any]) -> dict[str, str]:
    return dict(spec.split("=", 1) for spec in definition["packages"])


def load_stack_definition(path: Path = STACK_DEFINITION) -> dict[str, Any]:
    data = common.read_toml(path, "stack definition")
    specs = data.get("packages")
    if not isinstance(specs, list) or not specs:
        raise ToolError(f"{rel(path)}: `packages` must list name=version pins")
    for spec in specs:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*=\S+", str(spec)):
            raise ToolError(f"{rel(path)}: packages: {spec!r} is not name=version")
    return data


def not_in_base(closure: list[tuple[str, str]], base_packages: dict[str, str]) -> list[str]:
    """``name=version`` of the closure's packages the base does not hold at that very version."""
    return [f"{p}={v}" for p, v in closure if base_packages.get(p) != v]


# --- checking ---------------------------------------------------------------------------------


@dataclass
class Problems:
    missing: list[str] = field(default_factory=list)
    altered: list[str] = field(default_factory=list)  # messages naming the file and both hashes

    def __bool__(self) -> bool:
        return bool(self.missing or self.altered)


def check_files(store: Path, files: dict[str, dict[str, Any]], groups: tuple[str, ...] = GROUPS) -> Problems:
    """Which locked files of ``groups`` are missing from ``store`` or differ from the lock."""
    problems = Problems()
    for name, entry in sorted(files.items()):
        if group_of(name) not in groups:
            continue
        path = store / name
        if not path.is_file():
            problems.missing.append(name)
            continue
        got = file_digest(path)
        if got != entry["sha256"]:
            problems.altered.append(
                f"{rel(path)}: sha256 {got}, but {rel(LOCK)} records {entry['sha256']} "
                "(altered or corrupt: delete it, then `make store`)"
            )
    return problems


@contextmanager
def verified_copies(
    names: list[str], files: dict[str, dict[str, Any]], store: Path | None = None
) -> Iterator[list[Path]]:
    """Private copies of store files, each hashed after it was copied: what dpkg then reads is
    exactly what was checked (no one can swap a store file between the check and its use).

    The copies live in a fresh directory only this user can enter (mode 0700: root-owned when run
    as root) and are removed afterwards. A copy whose sha256 is not the lock's is refused, naming
    the file and both hashes."""
    store = store if store is not None else STORE
    with tempfile.TemporaryDirectory(prefix="lockstep-debs-") as tmp:
        private = Path(tmp)
        private.chmod(0o700)
        copies = []
        for name in names:
            copy = private / Path(name).name
            shutil.copyfile(store / name, copy)
            got = file_digest(copy)
            if got != files[name]["sha256"]:
                locked = files[name]["sha256"]
                raise ToolError(f"refusing {rel(store / name)}: its copy has sha256 {got}, locked {locked}")
            copies.append(copy)
        yield copies


def refuse_altered(problems: Problems) -> None:
    if problems.altered:
        raise ToolError(
            "refusing files of the store whose hash differs from the lock:\n  "
            + "\n  ".join(problems.altered)
        )


def place(src: Path, dest: Path) -> None:
    """Put a store file at ``dest`` (hard link, else copy), replacing what is there atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and src.samefile(dest):
        return
    tmp = temporary_beside(dest)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    replace_durably(tmp, dest)


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


# --- DVC --------------------------------------------------------------------------------------


def _dvc(*args: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("dvc")
    cmd = [str(exe) if exe.exists() else "dvc", *args]
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=capture, text=True, check=False)
    except FileNotFoundError:
        raise ToolError("dvc: not installed (run `make setup`)") from None


def dvc_pull() -> bool:
    """`dvc pull store.dvc` when a DVC remote is configured; False when there is none."""
    if not STORE_DVC.is_file():
        log(f"store: no {rel(STORE_DVC)} yet (nothing to pull)")
        return False
    remotes = _dvc("remote", "list").stdout.strip()
    if not remotes:
        log("store: no DVC remote configured (`dvc remote add -d ...`); cannot pull")
        return False
    log(f"store: dvc pull {rel(STORE_DVC)} (from the DVC remote)")
    p = _dvc("pull", "--quiet", rel(STORE_DVC))
    if p.returncode != 0:
        # Partial pulls are normal (a remote that lacks some files); what is missing is fetched.
        log(f"store: dvc pull did not get everything: {(p.stderr or p.stdout).strip()[-500:]}")
    return True


def dvc_cached() -> bool:
    """Whether the DVC cache holds the store as store.dvc records it (else `dvc push` cannot send it,
    e.g. after store/ was restored by a CI cache or copied by hand)."""
    text = STORE_DVC.read_text(encoding="utf-8") if STORE_DVC.is_file() else ""
    m = re.search(r"md5: ([0-9a-f]{32}\.dir)", text)
    return m is not None and (ROOT / ".dvc/cache/files/md5" / m.group(1)[:2] / m.group(1)[2:]).is_file()


def remove_unlocked(files: dict[str, dict[str, Any]]) -> None:
    """Delete files in store/ that the lock does not name, so `dvc add` records exactly the lock."""
    for path in sorted(STORE.rglob("*")):
        if path.is_file() and path.relative_to(STORE).as_posix() not in files:
            log(f"store: removing {rel(path)} (not in {rel(LOCK)})")
            path.unlink()


def dvc_add() -> None:
    """Record the store in store.dvc and the DVC cache, so `dvc push` uploads it."""
    p = _dvc("add", "--quiet", rel(STORE))
    if p.returncode != 0:
        raise ToolError(f"dvc add {rel(STORE)} failed: {(p.stderr or p.stdout).strip()[-1000:]}")
    log(f"store: recorded in {rel(STORE_DVC)} (`dvc push` uploads it to the DVC remote)")


# --- fetching (network) ----------------------------------------------------------------------


def _refuse_network(what: str) -> None:
    if os.environ.get(OFFLINE_ENV):
        raise ToolError(f"{OFFLINE_ENV} is set: not fetching {what} from the network")


def host_suite_sources(suite: str) -> list[aptsources.Source]:
    try:
        picked = aptsources.sources_for_suite(aptsources.host_sources(), suite, ["main"])
    except LookupError as e:
        raise ToolError(f"{e}: the store is filled from the host's Debian mirror") from None
    return aptsources.check_sources(picked)


def engine_apt(definition: dict[str, Any]) -> AptState:
    host = host_suite_sources(definition["host_suite"])
    newer = aptsources.Source(host[0].uri, definition["suite"], ("main",))
    return AptState(state_folder("apt-engine"), [newer, *host], low_priority_suites=(definition["suite"],))


def builder2_apt(definition: dict[str, Any]) -> AptState:
    host = host_suite_sources(definition["host_suite"])
    suite = definition["second_builder"]["suite"]
    return AptState(state_folder("apt-builder2"), [aptsources.Source(host[0].uri, suite, ("main",))])


def fetch_wheels(plat: platforms.Platform = platforms.AMD64) -> int:
    _refuse_network(f"{plat.name} wheels")
    folder = STORE / wheels_folder(plat)
    before = set(folder.glob("*.whl"))
    log(f"store: downloading {plat.name} wheels from the package index (network)")
    wheels.pip_download([ROOT / n for n in wheels.store_lock_names(plat)], folder, plat)
    return len(set(folder.glob("*.whl")) - before)


def local_base_repository(dest: Path, plat: platforms.Platform = platforms.AMD64) -> aptsources.Source:
    """An apt repository of the store's base .debs (checked first) under ``dest``, for mmdebstrap.

    Unsigned (``trusted=yes``): every .deb was just checked against image/store.lock.json, and the
    index is written here from those very files (control fields + size + sha256).
    """
    files = StoreLock.read().files
    debs = {n: e for n, e in files.items() if n.startswith(debs_folder(plat) + "/")}
    problems = check_files(STORE, debs, (rootfs_group(plat),))
    refuse_altered(problems)
    if problems.missing:
        raise InputError(
            f"cannot re-derive the {plat.name} base: missing from {rel(STORE)}: {', '.join(problems.missing)}"
        )
    suite = base.load_definition()["suite"]
    shutil.rmtree(dest, ignore_errors=True)
    index = dest / "dists" / suite / f"main/binary-{plat.deb_arch}"
    index.mkdir(parents=True)
    stanzas = []
    for name, entry in sorted(debs.items()):
        pool = dest / "pool" / Path(name).name
        place(STORE / name, pool)
        control = subprocess.run(["dpkg-deb", "-f", str(pool)], capture_output=True, text=True, check=True)
        stanzas.append(
            control.stdout.rstrip("\n")
            + f"\nFilename: pool/{pool.name}\nSize: {entry['bytes']}\nSHA256: {entry['sha256']}\n"
        )
    (index / "Packages").write_text("\n".join(stanzas), encoding="utf-8")
    (dest / "dists" / suite / "Release").write_text(
        f"Suite: {suite}\nCodename: {suite}\nArchitectures: {plat.deb_arch}\nComponents: main\n",
        encoding="utf-8",
    )
    # copy://: mmdebstrap copies the files into its chroot (file:// would need a bind mount).
    return aptsources.Source(f"copy://{dest}", suite, ("main",), ("trusted=yes",))


def rederive_base(out: Path, plat: platforms.Platform = platforms.AMD64) -> base.Built:
    """The base rootfs rebuilt by mmdebstrap from the store's .debs only: no mirror, no network."""
    lock = base.load_lock(plat)
    source = local_base_repository(BUILD / f"base-repo{plat.suffix}", plat)
    return base.mmdebstrap(base.load_definition(), [source], lock.source_date_epoch, out, plat)


def fetch_rootfs(plat: platforms.Platform = platforms.AMD64) -> str:
    """The platform's store rootfs.tar at its base lock's sha256: from build/ if there, else
    re-derived from the store's .debs (offline), else mmdebstrap from the mirror."""
    lock = base.load_lock(plat)
    lock_path, tarball = plat.base_lock(), plat.rootfs()
    dest = STORE / rootfs_name(plat)
    if tarball.is_file() and file_digest(tarball) == lock.tarball_sha256:
        place(tarball, dest)
        return f"copied from {rel(tarball)}"
    tmp = temporary_beside(dest)
    folder = debs_folder(plat) + "/"
    debs = {n: e for n, e in StoreLock.read().files.items() if n.startswith(folder)}
    if debs and not check_files(STORE, debs, (rootfs_group(plat),)):
        built = rederive_base(tmp, plat)
        how = f"re-derived by mmdebstrap from {rel(STORE / folder)} (no network)"
    else:
        _refuse_network(f"the {plat.name} base root filesystem")
        definition = base.load_definition()
        built = base.mmdebstrap(
            definition, base.resolve_sources(definition), lock.source_date_epoch, tmp, plat
        )
        how = "built by mmdebstrap from the Debian mirror (network)"
    if built.sha256 != lock.tarball_sha256:
        tmp.unlink(missing_ok=True)
        raise ToolError(
            f"{how.split(' (')[0]}, the base is not {rel(lock_path)}'s (sha256 {built.sha256}, locked "
            f"{lock.tarball_sha256}); " + base.drift_explanation(lock.packages, built.packages, lock_path)
        )
    replace_durably(tmp, dest)
    return how


def base_apt(plat: platforms.Platform = platforms.AMD64) -> AptState:
    definition = base.load_definition()
    return AptState(
        state_folder(f"apt-base-{plat.deb_arch}"), base.resolve_sources(definition), arch=plat.deb_arch
    )


def fetch_debs(names: list[str]) -> None:
    """The named store .debs, at the versions their file names carry."""
    by_folder: dict[str, list[str]] = {}
    for name in names:
        pkg, version = deb_file_version(Path(name).name)
        by_folder.setdefault(str(Path(name).parent), []).append(f"{pkg}={version}")
    for folder, specs in by_folder.items():
        _refuse_network(f"{len(specs)} Debian packages")
        if group_of(folder) == "engine":
            apt = engine_apt(load_engine_definition())
        elif group_of(folder) == "builder2":
            apt = builder2_apt(load_engine_definition())
        else:
            apt = base_apt(platform_of(folder))
        apt.download(specs, STORE / folder)


def fetch_missing(missing: list[str]) -> list[str]:
    """Fetch exactly the missing locked files; returns what was done, for the log."""
    done = []
    for plat in platforms.ALL:
        if any(n.startswith(wheels_folder(plat) + "/") for n in missing):
            done.append(f"{fetch_wheels(plat)} {plat.name} wheels from the package index")
    debs = [n for n in missing if n.endswith(".deb")]
    if debs:
        fetch_debs(debs)
        done.append(f"{len(debs)} .debs from the Debian mirror")
    for plat in platforms.ALL:  # after the .debs: it is re-derived from them, offline
        if rootfs_name(plat) in missing:
            done.append(f"{rootfs_name(plat)} {fetch_rootfs(plat)}")
    return done


# --- commands ---------------------------------------------------------------------------------


def ensure(groups: list[str] | tuple[str, ...] = GROUPS, *, quiet: bool = False) -> None:
    """Make the locked files of ``groups`` present and intact: DVC remote first, network last."""
    wanted = tuple(groups)
    files = StoreLock.read().files
    problems = check_files(STORE, files, wanted)
    refuse_altered(problems)
    pulled = False
    if problems.missing:
        log(f"store: {len(problems.missing)} of the locked files are missing from {rel(STORE)}")
        if pulled := dvc_pull():
            problems = check_files(STORE, files, wanted)
            refuse_altered(problems)
    fetched: list[str] = []
    if problems.missing and os.environ.get(OFFLINE_ENV):
        shown = ", ".join(f"{rel(STORE / n)}" for n in problems.missing[:10])
        more = f" and {len(problems.missing) - 10} more" if len(problems.missing) > 10 else ""
        raise StoreIncompleteError(f"{OFFLINE_ENV} is set (no network), and the store lacks {shown}{more}")
    if problems.missing:
        fetched = fetch_missing(problems.missing)
        problems = check_files(STORE, files, wanted)
        refuse_altered(problems)
        if problems.missing:
            raise ToolError(f"still missing from {rel(STORE)} after fetching: " + ", ".join(problems.missing))
    if (fetched or not dvc_cached()) and set(wanted) == set(GROUPS):
        remove_unlocked(files)
        dvc_add()
    n = [e for name, e in files.items() if group_of(name) in wanted]
    summary = (
        f"store: {len(n)} files ({_mb(sum(e['bytes'] for e in n))}) of {', '.join(wanted)} match {rel(LOCK)}"
    )
    if fetched:
        log(f"{summary}; filled: {'; '.join(fetched)}")
    elif pulled or not quiet:
        log(f"{summary}; {'pulled from the DVC remote, ' if pulled else ''}nothing fetched from the network")


def download_debs(apt: AptState, specs: list[str], folder: str) -> set[str]:
    """Download ``name=version`` specs into store/``folder``; their store paths."""
    apt.download(specs, STORE / folder)
    wanted = set(specs)
    return {
        f"{folder}/{path.name}"
        for path in STORE.joinpath(folder).glob("*.deb")
        if "=".join(deb_file_version(path.name)) in wanted
    }


def lock_wheels(plat: platforms.Platform) -> set[str]:
    """Fetch the platform's locked wheels into the store, drop stale ones; their store paths."""
    folder = STORE / wheels_folder(plat)
    fetch_wheels(plat)
    reqs = {r.name: r for r in wheels.load_locks(ROOT, wheels.store_lock_names(plat))}
    problems = wheels.check_wheels(list(reqs.values()), folder)
    stale = [p for p in problems if "not in the locks" in p]
    for path in folder.glob("*.whl"):
        if any(p.startswith(rel(path) + ":") for p in stale):
            path.unlink()
    problems = wheels.check_wheels(list(reqs.values()), folder)
    if problems:
        raise ToolError(f"store {plat.name} wheels do not match the locks:\n  " + "\n  ".join(problems))
    return {f"{wheels_folder(plat)}/{p.name}" for p in folder.glob("*.whl")}


def lock_plan(groups: list[str]) -> list[tuple[platforms.Platform, bool, bool]]:
    """Per platform, whether `store lock GROUPS` re-locks its wheels and its base. amd64's are the
    `wheels` and `base` groups; another platform's group (`arm64`) is both, and `wheels` alone
    takes its wheels too."""
    plan = []
    for plat in platforms.ALL:
        whole = bool(plat.store_prefix) and plat.deb_arch in groups
        take_wheels = "wheels" in groups or whole
        take_base = whole if plat.store_prefix else "base" in groups
        if take_wheels or take_base:
            plan.append((plat, take_wheels, take_base))
    return plan


def cmd_lock(groups: list[str]) -> int:
    """Re-fill from the network what the other locks name now, and write the store lock."""
    old: dict[str, dict[str, Any]] = {}
    tools_closure: list[str] = []
    if LOCK.is_file():
        previous = StoreLock.read()
        old, tools_closure = previous.files, list(previous.tools_closure)
    keep: dict[str, dict[str, Any]] = {n: e for n, e in old.items() if group_of(n) not in groups}
    wanted: set[str] = set()
    for plat, take_wheels, take_base in lock_plan(groups):
        if take_wheels:
            # Every platform's wheels follow the requirement locks: `make lock` re-locks them all,
            # also where the rest of that platform's group (its base) stays as it is.
            folder = wheels_folder(plat) + "/"
            keep = {n: e for n, e in keep.items() if not n.startswith(folder)}
            wanted |= lock_wheels(plat)
        if take_base:
            log(f"store: {rootfs_name(plat)} {fetch_rootfs(plat)}")
            lock = base.load_lock(plat)
            specs = [f"{p}={v}" for p, v in lock.packages.items()]
            wanted |= download_debs(base_apt(plat), specs, debs_folder(plat))
            wanted.add(rootfs_name(plat))
    if "engine" in groups:
        definition = load_engine_definition()
        apt = engine_apt(definition)
        closure = apt.resolve([*definition["packages"], *definition["tools"]])
        pins = engine_pins(definition)
        wrong = [f"{p} {v} (pinned {pins[p]})" for p, v in closure if p in pins and pins[p] != v]
        if wrong:
            raise ToolError(f"{rel(ENGINE_DEFINITION)}: apt resolved other versions: {', '.join(wrong)}")
        wanted |= download_debs(apt, [f"{p}={v}" for p, v in closure], "engine/debs")
        # What the tools alone need, for hosts whose engine is fine but lack mmdebstrap or zstd.
        tools_closure = sorted(p for p, _ in apt.resolve(list(definition["tools"])))
    if "builder2" in groups:
        definition = load_engine_definition()
        specs = list(definition["second_builder"]["packages"])
        wanted |= download_debs(builder2_apt(definition), specs, "builder2/debs")
    if "stack" in groups:
        # From the base's own sources: the images install these .debs on the base's dpkg database.
        apt = base_apt()
        pins = load_stack_definition()["packages"]
        closure = apt.resolve(pins)
        wrong = sorted(set(pins) - {f"{p}={v}" for p, v in closure})
        if wrong:
            raise ToolError(f"{rel(STACK_DEFINITION)}: apt did not resolve {', '.join(wrong)}")
        base_packages = base.load_lock().packages
        wanted |= download_debs(apt, not_in_base(closure, base_packages), "stack/debs")
    for group in groups:  # drop what the locks no longer name
        for path in STORE.joinpath(group).rglob("*"):
            name = path.relative_to(STORE).as_posix()
            if path.is_file() and name not in wanted:
                log(f"store: removing {rel(path)} (no longer locked)")
                path.unlink()
    files = dict(keep)
    for name in sorted(wanted):
        path = STORE / name
        files[name] = {"sha256": file_digest(path), "bytes": path.stat().st_size}
    common.write_json_atomic(
        LOCK,
        {
            "comment": "Written by `make lock-store` (python -m imagetool store lock); do not edit.",
            "engine_definition": load_engine_definition(),
            "tools_closure": tools_closure,
            "files": dict(sorted(files.items())),
        },
    )
    total = sum(e["bytes"] for e in files.values())
    log(f"store: wrote {rel(LOCK)}: {len(files)} files, {_mb(total)} (network used for {', '.join(groups)})")
    dvc_add()
    return 0


def cmd_rederive_base(plat: platforms.Platform = platforms.AMD64) -> int:
    """Prove the stored .debs still make the locked base: rebuild it offline and compare."""
    lock = base.load_lock(plat)
    lock_path = plat.base_lock()
    out = plat.rootfs().with_name("rederived.tar")
    built = rederive_base(out, plat)
    if built.sha256 != lock.tarball_sha256:
        raise ToolError(
            f"{rel(out)}: re-derived from {rel(STORE / debs_folder(plat))} with sha256 {built.sha256}, but "
            f"{rel(lock_path)} locks {lock.tarball_sha256}; "
            + base.drift_explanation(lock.packages, built.packages, lock_path)
        )
    out.unlink()
    log(
        f"store: re-derived the {plat.name} base from {rel(STORE / debs_folder(plat))} = {rel(lock_path)} "
        f"(sha256 {built.sha256})"
    )
    return 0


def cmd_check() -> int:
    files = StoreLock.read().files
    problems = check_files(STORE, files)
    refuse_altered(problems)
    if problems.missing:
        raise ToolError(
            f"{len(problems.missing)} locked files missing from {rel(STORE)} "
            f"(`dvc pull {rel(STORE_DVC)}` or `make store`): " + ", ".join(problems.missing[:10])
        )
    log(f"store: all {len(files)} files match {rel(LOCK)}")
    return 0


def cmd_status() -> int:
    files = StoreLock.read().files
    for group in GROUPS:
        entries = {n: e for n, e in files.items() if group_of(n) == group}
        problems = check_files(STORE, files, (group,))
        log(
            f"{group:7} {len(entries):4} files {_mb(sum(e['bytes'] for e in entries.values())):>7}  "
            f"missing {len(problems.missing)}, altered {len(problems.altered)}"
        )
    log(f"total   {len(files):4} files {_mb(sum(e['bytes'] for e in files.values())):>7}")
    return 0


def installed_packages(root: Path) -> dict[str, str]:
    """Installed packages (name -> version) of the dpkg database under ``root``."""
    status = root / "var/lib/dpkg/status"
    if not status.is_file():
        return {}
    return base.parse_dpkg_status(status.read_text(encoding="utf-8", errors="replace"))


def engine_debs_to_install(
    debs: list[str], installed: dict[str, str], pins: dict[str, str], only: set[str] | None = None
) -> list[str]:
    """The store .debs a host needs: pinned packages not at their pin, and whatever is absent
    (among ``only``, when given: the tools' closure, for a host whose engine is fine).

    A dependency the host already has at another version is left alone (it is the host suite's,
    like the store's); dpkg refuses, naming it, if that version is too old.
    """
    out = []
    for name in debs:
        pkg, version = deb_file_version(Path(name).name)
        if only is not None and (pkg not in only or pkg in installed or pkg in pins):
            continue
        have = installed.get(pkg)
        if (pkg in pins and have != pins[pkg] and version == pins[pkg]) or (pkg not in pins and have is None):
            out.append(name)
    return out


def cmd_install_engine(root: Path, tools_only: bool = False) -> int:
    if os.geteuid() != 0:
        raise ToolError("installing the engine needs root (dpkg)")
    ensure(["engine"])
    lock = StoreLock.read()
    definition = load_engine_definition()
    debs = sorted(n for n in lock.files if n.startswith("engine/debs/"))
    only = set(lock.tools_closure) if tools_only else None
    chosen = engine_debs_to_install(debs, installed_packages(root), engine_pins(definition), only)
    if not chosen:
        log(f"engine: every package of {rel(ENGINE_DEFINITION)} is installed in {root}")
        return 0
    log(f"engine: installing {len(chosen)} packages from {rel(STORE)}/engine/debs into {root} (no mirror)")
    cmd = ["dpkg", "--force-confdef", "--force-confold", "-i"]
    if root.resolve() != Path("/"):
        cmd.insert(1, f"--root={root}")
    with verified_copies(chosen, lock.files) as copies:  # dpkg reads the checked copies, not the store
        p = subprocess.run(
            [*cmd, *map(str, copies)],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            capture_output=True,
            text=True,
            check=False,
        )
    if p.returncode != 0:
        raise ToolError(f"dpkg -i failed ({p.returncode}):\n{(p.stderr or p.stdout).strip()[-2000:]}")
    log(f"engine: installed {', '.join(deb_file_version(Path(n).name)[0] for n in chosen)}")
    return 0
