"""The Kubernetes manifests: valid for a pinned Kubernetes version, pinned to image.lock's digest,
hardened as `make run` runs the image, and sized from the benchmark's measured memory."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from imagetool.images.image_lock import ImageLock
from imagetool.ship import deploy
from imagetool.ship.container import make_run_command

KUBERNETES_VERSION = "1.33.0"  # the schemas kubernetes-validate ships for this release
BASE = Path("deploy/k8s/base")


def load(repo_root: Path, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((repo_root / BASE / name).read_text())
    return doc


def resources(repo_root: Path) -> list[str]:
    names: list[str] = load(repo_root, "kustomization.yaml")["resources"]
    return names


def container(repo_root: Path) -> dict[str, Any]:
    [only] = load(repo_root, "deployment.yaml")["spec"]["template"]["spec"]["containers"]
    return dict(only)


def quantity_mib(text: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1.0, "Gi": 1024.0}
    return float(text[:-2]) * units[text[-2:]]


def test_every_kustomize_resource_is_valid_for_the_pinned_kubernetes(repo_root: Path) -> None:
    names = resources(repo_root)
    assert sorted(names) == ["deployment.yaml", "hpa.yaml", "pdb.yaml", "service.yaml"]
    for name in names:
        kubernetes_validate.validate(load(repo_root, name), KUBERNETES_VERSION, strict=True)


def test_validation_rejects_a_misspelt_field(repo_root: Path) -> None:
    """The schema check is strict: an unknown field (here a typo'd readOnlyRootFilesystem) fails."""
    doc = load(repo_root, "deployment.yaml")
    doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFS"):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomization_pins_the_image_lock_index_digest(repo_root: Path) -> None:
    [image] = load(repo_root, "kustomization.yaml")["images"]
    assert image["name"] == container(repo_root)["image"] == "lockstep"
    assert image["digest"] == ImageLock.read(repo_root / "image.lock").pinned
    assert image["digest"] == json.loads((repo_root / "image.lock").read_text())["index"]["digest"]


def test_check_deploy_names_a_stale_digest_and_sync_fixes_it(repo_root: Path, tmp_path: Path) -> None:
    root = shutil.copytree(repo_root / "deploy", tmp_path / "deploy")
    digest = ImageLock.read(repo_root / "image.lock").pinned
    assert deploy.stale(digest, root) == []
    other = "sha256:" + "0" * 64
    problems = deploy.stale(other, root)
    files = [p.split(":")[0] for p in problems]
    pinned = [
        "compose.yaml",
        "k8s/base/kustomization.yaml",
        "kserve/inferenceservice.yaml",
        "kserve/servingruntime.yaml",
    ]
    assert files == [f"{root}/{name}" for name in pinned]
    for problem in problems:
        assert digest in problem
        assert other in problem
    assert deploy.sync(other, root) == [root / name for name in pinned]
    assert deploy.stale(other, root) == []


def test_pod_runs_hardened_like_make_run(repo_root: Path) -> None:
    """Non-root 10001, read-only root, no capabilities, no escalation, RuntimeDefault seccomp."""
    pod = load(repo_root, "deployment.yaml")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container(repo_root)["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    run = " ".join(make_run_command("lockstep-x", 18000, "some/image:tag", repo_root))
    for flag in ("--read-only", "--cap-drop=ALL", "no-new-privileges", "--user 10001:10001"):
        assert flag in run, f"make run lost {flag}: the manifest's hardening no longer matches it"


def test_probes_use_liveness_and_readiness_endpoints(repo_root: Path) -> None:
    c = container(repo_root)
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_memory_request_and_limit_cover_the_measured_rss(repo_root: Path) -> None:
    """Sized from bench/results/serve.json: request >= 1.5x the worker's peak RSS, limit 2x request."""
    bench = json.loads((repo_root / "bench/results/serve.json").read_text())
    measured = [f["rss"] for f in bench["families"].values() if f.get("rss")]
    assert measured, "bench/results/serve.json has no RSS run: `make bench BENCH_ARGS=--sustain=60`"
    peak = max(worker["rss_mib_max"] for rss in measured for worker in rss["workers"])
    res = container(repo_root)["resources"]
    request, limit = quantity_mib(res["requests"]["memory"]), quantity_mib(res["limits"]["memory"])
    assert request >= math.ceil(1.5 * peak)
    assert limit >= 2 * request


def test_disruption_budget_and_autoscaler_target_the_deployment(repo_root: Path) -> None:
    hpa, pdb = load(repo_root, "hpa.yaml"), load(repo_root, "pdb.yaml")
    deployment = load(repo_root, "deployment.yaml")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "lockstep",
    }
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
