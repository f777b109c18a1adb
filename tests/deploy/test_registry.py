"""`make push`: the registry serves exactly the built manifest and layers, the SBOM is attached as an
artifact referring to the image without changing its digest, and the pulled image runs."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from imagetool.container import hardened_container
from tools import registry
from tools.registry import OciTarball, Registry, RegistryError

pytestmark = pytest.mark.docker


def fake_sbom(digest: str) -> bytes:
    """A minimal CycloneDX document describing `digest` (the real one comes from tools.sbom)."""
    doc = {"bomFormat": "CycloneDX", "specVersion": "1.6", "metadata": {"component": {"version": digest}}}
    return json.dumps(doc).encode()


def test_registry_serves_the_built_manifest_and_blobs_byte_for_byte(
    registry_server: Registry, built_image: OciTarball, pushed: str
) -> None:
    assert pushed == built_image.digest
    reply = registry.get_manifest(registry_server, "latest")
    assert reply.headers["docker-content-digest"] == built_image.digest
    assert reply.body == built_image.manifest
    for desc in built_image.blobs:  # fetch_blob checks each blob's sha256 against its digest
        assert len(registry.fetch_blob(registry_server, desc["digest"])) == desc["size"]


def test_push_refuses_a_tarball_that_is_not_the_locked_digest(
    registry_server: Registry, built_image: OciTarball
) -> None:
    other = "sha256:" + "0" * 64
    with pytest.raises(RegistryError, match=f"holds {built_image.digest}, image.lock says {other}"):
        registry.push_image(registry_server, built_image, other)


def test_pushing_again_uploads_nothing_and_keeps_the_digest(
    registry_server: Registry, built_image: OciTarball, pushed: str
) -> None:
    for desc in built_image.blobs:
        with built_image.blob(desc["digest"]) as data:
            assert not registry.push_blob(registry_server, desc["digest"], desc["size"], data)
    assert registry.push_image(registry_server, built_image, pushed) == pushed


def test_registry_refuses_a_blob_whose_bytes_are_not_its_digest(registry_server: Registry) -> None:
    with pytest.raises(RegistryError, match="HTTP 400"):
        registry.push_blob(registry_server, registry.sha256(b"one"), 3, b"two")


def test_sbom_is_attached_as_a_referrer_without_changing_the_image_digest(
    registry_server: Registry, pushed: str, repo_root: Path
) -> None:
    sbom_file = repo_root / registry.SBOM_FILE
    sbom = sbom_file.read_bytes() if sbom_file.is_file() else fake_sbom(pushed)
    if json.loads(sbom)["metadata"]["component"]["version"] != pushed:
        sbom = fake_sbom(pushed)  # the committed SBOM describes image.lock's digest, not this build
    artifact = registry.attach_sbom(registry_server, pushed, sbom)
    assert registry.attach_sbom(registry_server, pushed, sbom) == artifact  # same SBOM, same digest
    [found] = registry.referrers(registry_server, pushed)
    assert found == {
        "mediaType": registry.OCI_MANIFEST,
        "digest": artifact,
        "size": len(registry.get_manifest(registry_server, artifact).body),
        "artifactType": registry.SBOM_TYPE,
    }
    manifest = json.loads(registry.get_manifest(registry_server, artifact).body)
    assert manifest["subject"]["digest"] == pushed
    assert registry.fetch_blob(registry_server, manifest["layers"][0]["digest"]) == sbom
    assert registry.get_manifest(registry_server, "latest").headers["docker-content-digest"] == pushed


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"not json", "not a CycloneDX JSON document"),
        (b'{"bomFormat": "SPDX", "metadata": {"component": {"version": "DIGEST"}}}', "bomFormat is 'SPDX'"),
        (
            b'{"bomFormat": "CycloneDX", "metadata": {"component": {"version": "sha256:0"}}}',
            "describes sha256:0",
        ),
    ],
    ids=["not-json", "other-format", "other-image"],
)
def test_sbom_check_names_what_is_wrong(document: bytes, message: str) -> None:
    digest = "sha256:" + "a" * 64
    with pytest.raises(RegistryError, match=message):
        registry.check_sbom(document.replace(b"DIGEST", digest.encode()), Path("sbom.json"), digest)


@pytest.mark.parametrize("text", ["localhost", "127.0.0.1:99999", "host:5000/Upper", "http://h:5000"])
def test_cli_rejects_a_malformed_registry_with_exit_2(text: str, repo_root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tools.registry", "push", text],
        cwd=repo_root, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert f"registry {text!r} is not HOST:PORT[/PREFIX]" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_names_an_unreachable_registry_with_exit_2(repo_root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tools.registry", "referrers", "127.0.0.1:9", "sha256:" + "a" * 64],
        cwd=repo_root, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "127.0.0.1:9" in proc.stderr
    assert "no answer from the registry" in proc.stderr


def test_pulled_image_runs_and_predicts(registry_server: Registry, pushed: str) -> None:
    ref = f"{registry_server.reference}@{pushed}"
    subprocess.run(["docker", "pull", "-q", ref], capture_output=True, text=True, check=True)
    try:
        with hardened_container(ref) as running:
            with urllib.request.urlopen(f"{running.url}/model", timeout=5) as reply:
                model = json.load(reply)
            assert reply.status == 200
            assert model
    finally:
        subprocess.run(["docker", "rmi", ref], capture_output=True, check=False)
