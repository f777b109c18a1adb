"""The promise: the image digest is a pure function of the locked inputs."""

from __future__ import annotations

import pytest

from tests.integration.conftest import LockedBuild

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_two_no_cache_builds_give_the_same_digest(locked_builds: LockedBuild) -> None:
    assert locked_builds.first.digest == locked_builds.second.digest


def test_rebuilt_digest_equals_image_lock(locked_builds: LockedBuild) -> None:
    assert locked_builds.first.digest == locked_builds.locked_digest, (
        "a --no-cache rebuild does not reproduce image.lock; `make verify` explains why"
    )


def test_labels_carry_only_input_hashes(locked_builds: LockedBuild) -> None:
    labels = locked_builds.first.config["config"]["Labels"]
    assert set(labels) == {
        "org.opencontainers.image.title",
        "org.opencontainers.image.description",
        "io.lockstep.model.md5",
        "io.lockstep.requirements.sha256",
        "io.lockstep.base-lock.sha256",
    }
    assert not any("created" in k or "date" in k for k in labels)


def test_final_image_has_no_pip_setuptools_compilers_or_training_libraries(
    locked_builds: LockedBuild,
) -> None:
    from imagetool.images import ocidiff

    entries: dict[str, ocidiff.Entry] = {}
    for i in range(len(locked_builds.first.layers)):
        entries |= ocidiff.read_entries(ocidiff.layer_bytes(locked_builds.first, i))
    paths = {p for p, e in entries.items() if e.type != "dir"}
    site = "opt/venv/lib/python3.11/site-packages"
    assert f"{site}/numpy/__init__.py" in paths  # the venv is there...
    assert not [p for p in paths if p.startswith((f"{site}/sklearn/", f"{site}/scipy/"))]  # ...lean
    assert not [p for p in paths if p.startswith((f"{site}/pip/", f"{site}/setuptools/"))]
    assert not [
        p for p in paths if p.rsplit("/", 1)[-1] in {"gcc", "cc", "g++", "apt", "apt-get", "pip", "pip3"}
    ]
    docs = [p for p, e in entries.items() if p.startswith("usr/share/doc/") and e.type == "file"]
    assert all(p.endswith("/copyright") for p in docs), "only licences are kept under usr/share/doc"
    assert not [p for p in paths if p.startswith(("usr/share/man/", "usr/share/locale/"))]
