"""Lock files: every requirement pinned and hashed, no host lines, dev constrained by runtime."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imagetool.inputs.locks import LOCKS as LOCK_SPECS
from imagetool.inputs.locks import (
    LockError,
    Requirement,
    check,
    compile_locks,
    constraint_problems,
    diff_locks,
    parse_lock,
)

LOCKS = ["requirements.txt", "requirements/dev.txt", "requirements/serve.txt", "requirements/build.txt"]


@pytest.mark.parametrize("name", LOCKS)
def test_committed_lock_pins_and_hashes_every_requirement(repo_root: Path, name: str) -> None:
    reqs = parse_lock(repo_root / name)
    assert all(r.hashes for r in reqs.values())
    text = (repo_root / name).read_text()
    for bad in ("--index-url", "--extra-index-url", "--find-links", "file://", "/opt/", "/root/", "/work/"):
        assert bad not in text.replace("--no-emit-index-url", "").replace("--no-emit-find-links", "")


def test_dev_lock_uses_exactly_the_runtime_versions(repo_root: Path) -> None:
    runtime = parse_lock(repo_root / "requirements.txt")
    dev = parse_lock(repo_root / "requirements/dev.txt")
    mismatched = {n: (r.version, dev[n].version) for n, r in runtime.items() if dev[n].version != r.version}
    assert mismatched == {}


def test_image_lock_is_the_service_subset_of_the_runtime_lock(repo_root: Path) -> None:
    serve = parse_lock(repo_root / "requirements/serve.txt")
    assert constraint_problems(repo_root / "requirements/serve.txt", repo_root / "requirements.txt") == []
    assert set(serve) < set(parse_lock(repo_root / "requirements.txt"))
    assert {"fastapi", "uvicorn", "numpy", "orjson"} <= set(serve)
    assert not {"scikit-learn", "scipy", "joblib"} & set(serve)


def test_constraint_problems_name_moved_versions_and_hashes(tmp_path: Path) -> None:
    def lock(name: str, *entries: tuple[str, str, str]) -> Path:
        path = tmp_path / name
        path.write_text("".join(f"{n}=={v} \\\n    --hash=sha256:{h * 64}\n" for n, v, h in entries))
        return path

    runtime = lock("runtime.txt", ("a", "1", "0"), ("b", "1", "0"), ("c", "1", "0"))
    serve = lock("serve.txt", ("a", "2", "0"), ("b", "1", "f"), ("c", "1", "0"), ("d", "1", "0"))
    assert constraint_problems(serve, runtime) == [
        "a==2 but runtime.txt has 1",
        "b==1: hashes differ from runtime.txt's",
    ]


def test_runtime_lock_covers_the_service_and_training_libraries(repo_root: Path) -> None:
    reqs = parse_lock(repo_root / "requirements.txt")
    for name in ("fastapi", "uvicorn", "scikit-learn", "numpy", "scipy", "joblib", "pydantic"):
        assert name in reqs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("numpy>=1.0 \\\n    --hash=sha256:" + "a" * 64 + "\n", "not pinned with =="),
        ("numpy==2.0\n", "numpy has no sha256 hash"),
        ("--extra-index-url https://example.org/simple\n", "forbidden index/host line"),
        ("--find-links /opt/wheels\n", "forbidden index/host line"),
        ("-i https://example.org/simple\n", "forbidden index/host line"),
        ("# only comments\n", "no requirements"),
    ],
    ids=["unpinned", "unhashed", "extra-index", "find-links", "short-index", "empty"],
)
def test_parse_lock_rejects_bad_lines_naming_the_file(tmp_path: Path, text: str, expected: str) -> None:
    lock = tmp_path / "requirements.txt"
    lock.write_text(text)
    with pytest.raises(LockError, match=expected) as info:
        parse_lock(lock)
    assert str(lock) in str(info.value)


def test_diff_locks_names_added_removed_and_moved_packages() -> None:
    h = frozenset({"0" * 64})
    old = {"a": Requirement("a", "1", h), "b": Requirement("b", "1", h), "c": Requirement("c", "1", h)}
    new = {
        "a": Requirement("a", "2", h),
        "c": Requirement("c", "1", frozenset({"1" * 64})),
        "d": Requirement("d", "1", h),
    }
    assert diff_locks(new, old) == ["a: 1 -> 2", "extra b==1", "c==1: hashes differ", "missing d==1"]


@pytest.mark.slow
@pytest.mark.parametrize("name", LOCKS)
def test_committed_lock_matches_what_its_in_file_resolves_to(repo_root: Path, name: str) -> None:
    """`make check-lock`: the real pip-compile, against the package index."""
    check(repo_root / name)


@pytest.mark.slow
def test_check_lock_fails_naming_the_file_when_the_in_file_gains_a_package(
    tmp_path: Path, repo_root: Path
) -> None:
    """The real pip-compile: the committed runtime lock passes; adding a requirement to the .in makes
    the same lock stale, and the error names it."""
    for name in ("requirements.in", "requirements.txt"):
        (tmp_path / name).write_bytes((repo_root / name).read_bytes())
    with (tmp_path / "requirements.in").open("a") as fh:
        fh.write("tomli-w\n")  # in no lock (six came in through pandas)
    with pytest.raises(LockError, match=r"requirements.txt: out of date .*missing tomli-w=="):
        check(tmp_path / "requirements.txt")


def test_locks_check_names_a_missing_lock_and_goes_on_to_the_next(repo_root: Path, tmp_path: Path) -> None:
    """One line per lock through the real command line; a missing file is refused, not a traceback."""
    import subprocess
    import sys

    missing = tmp_path / "absent.txt"
    done = subprocess.run(
        [sys.executable, "-m", "imagetool", "locks", "check", str(missing), "requirements.txt"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: {missing}: cannot read (No such file or directory)"
    assert done.stdout.strip() == "ok: requirements.txt"


@pytest.mark.slow
def test_locks_compile_writes_the_committed_lock_from_its_in_file(repo_root: Path, tmp_path: Path) -> None:
    """`make lock`'s compiler, with the real pip-compile: the service lock, whose pins follow the
    runtime lock, comes out byte for byte as committed (the header records the same flags)."""
    (tmp_path / "requirements").mkdir()
    for name in ("requirements.in", "requirements.txt", "requirements/serve.in", "requirements/serve.txt"):
        (tmp_path / name).write_bytes((repo_root / name).read_bytes())
    (tmp_path / "requirements/serve.txt").write_text("")  # nothing to start from
    assert compile_locks(tmp_path, ("requirements/serve.txt",)) == 0
    assert (tmp_path / "requirements/serve.txt").read_text() == (
        repo_root / "requirements/serve.txt"
    ).read_text()


@pytest.mark.slow
def test_locks_compile_without_upgrade_keeps_every_pin(repo_root: Path, tmp_path: Path) -> None:
    """`make lock UPGRADE=0`: the runtime lock, which `make lock` otherwise re-resolves to the newest
    versions, comes out as committed (a package added to its .in would be the only change)."""
    for name in ("requirements.in", "requirements.txt"):
        (tmp_path / name).write_bytes((repo_root / name).read_bytes())
    assert compile_locks(tmp_path, ("requirements.txt",), upgrade=False) == 0
    assert (tmp_path / "requirements.txt").read_text() == (repo_root / "requirements.txt").read_text()


def test_make_lock_upgrade_0_asks_for_no_upgrade(repo_root: Path) -> None:
    import subprocess

    def recipe(*variables: str) -> str:
        command = ["make", "-s", "-n", "--no-print-directory", "-C", str(repo_root), "-o", "setup", "lock"]
        done = subprocess.run([*command, *variables], capture_output=True, text=True, check=True)
        return done.stdout

    assert "locks compile --no-upgrade" in recipe("UPGRADE=0")
    assert "--no-upgrade" not in recipe()


def test_only_imagetool_names_the_locks_and_the_pip_compile_flags(repo_root: Path) -> None:
    """One owner per list: make lock and make check-lock call `imagetool locks`, which has both."""
    make = "".join(p.read_text() for p in [repo_root / "Makefile", *sorted((repo_root / "mk").glob("*.mk"))])
    assert not re.findall(r"--generate-hashes|--allow-unsafe|pip-compile", make)
    # No list of locks: a line names one at most (the venv installs the dev lock).
    assert max(len(re.findall(r"requirements[\w/.-]*\.txt", line)) for line in make.splitlines()) <= 2
    assert "\t$(PY) -m imagetool locks compile " in make
    assert "\t$(PY) -m imagetool locks check\n" in make
    listed = {spec.path for spec in LOCK_SPECS}
    on_disk = {p.relative_to(repo_root).as_posix() for p in repo_root.glob("requirements*/**/*.txt")}
    assert listed == on_disk | {"requirements.txt"}
    assert all((repo_root / path).with_suffix(".in").is_file() for path in listed)
