"""The SBOM: made from the locks, byte-stable, valid CycloneDX 1.6, and committed in step with them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import contract
from imagetool.inputs.locks import parse_lock
from imagetool.ship import sbom

TREE_FILES = (
    "image.lock",
    "dvc.lock",
    "requirements/serve.txt",
    "requirements/serve-sklearn.txt",
    "image/base.lock.json",
    "image/store.lock.json",
    str(contract.SERVING_FILE),
    "build/base/rootfs.tar",
)


@pytest.fixture
def tree(repo_root: Path, tmp_path: Path) -> Path:
    """The SBOM's inputs copied from the repository, to alter one at a time (the 100 MB base
    tarball, which no test alters, hard-linked)."""
    for name in TREE_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".tar"):
            (tmp_path / name).hardlink_to(repo_root / name)
        else:
            shutil.copy(repo_root / name, tmp_path / name)
    return tmp_path


def components(text: str) -> dict[str, dict[str, Any]]:
    return {c["bom-ref"]: c for c in json.loads(text)["components"]}


def test_committed_sbom_matches_the_locks(repo_root: Path) -> None:
    """What `make check-sbom` checks in CI: image/sbom.cdx.json is exactly what the locks give."""
    assert (repo_root / sbom.SBOM_FILE).read_text() == sbom.build(sbom.read_inputs(repo_root))


def test_sbom_is_the_same_bytes_every_time(tree: Path) -> None:
    assert sbom.build(sbom.read_inputs(tree)) == sbom.build(sbom.read_inputs(tree))


def test_sbom_describes_the_image_by_its_locked_digest(tree: Path) -> None:
    doc = json.loads(sbom.build(sbom.read_inputs(tree)))
    digest = json.loads((tree / "image.lock").read_text())["digest"]
    assert doc["metadata"]["component"]["version"] == digest
    assert doc["metadata"]["component"]["type"] == "container"
    assert "timestamp" not in doc["metadata"]


def test_sbom_lists_every_served_wheel_with_its_stored_file_hash(tree: Path) -> None:
    inputs = sbom.read_inputs(tree)
    found = components(sbom.build(inputs))
    store = inputs.store_files
    for req in parse_lock(inputs.serve_lock).values():
        entry = found[f"pkg:pypi/{req.name}@{req.version}"]
        [digest] = [h["content"] for h in entry["hashes"]]
        assert digest in req.hashes
        [prop] = entry["properties"]
        assert store[f"wheels/{prop['value']}"]["sha256"] == digest


def test_sbom_lists_the_base_packages_the_image_keeps_with_debian_purls(tree: Path) -> None:
    found = components(sbom.build(sbom.read_inputs(tree)))
    packages = json.loads((tree / "image/base.lock.json").read_text())["packages"]
    debs = {c["name"]: c["version"] for ref, c in found.items() if ref.startswith("pkg:deb/debian/")}
    assert {"libc6", "python3.11-minimal", "libpython3.11-stdlib", "libstdc++6"} <= debs.keys()
    assert not {"bash", "dash", "perl-base", "dpkg", "login", "coreutils"} & debs.keys()
    assert all(packages[name] == version for name, version in debs.items())


def test_sbom_names_the_model_by_the_md5_dvc_lock_records(tree: Path) -> None:
    found = components(sbom.build(sbom.read_inputs(tree)))
    outs = contract.locked_outs(contract.load_dvc_lock(tree / "dvc.lock"))
    for path in (contract.METADATA_FILE, contract.SERVING_FILE):
        assert found[f"model:{path}"]["version"] == outs[str(path)]


def test_sbom_refuses_a_store_that_lacks_a_served_wheel(tree: Path) -> None:
    store = json.loads((tree / "image/store.lock.json").read_text())
    [numpy] = [name for name in store["files"] if name.startswith("wheels/numpy-")]
    del store["files"][numpy]
    (tree / "image/store.lock.json").write_text(json.dumps(store))
    with pytest.raises(sbom.SbomError, match=r"image/store.lock.json: expected one stored wheel of numpy=="):
        sbom.build(sbom.read_inputs(tree))
