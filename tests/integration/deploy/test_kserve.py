"""The KServe manifests (deploy/kserve): an InferenceService speaking the Open Inference Protocol (V2)
and the ServingRuntime it names. They are custom resources, absent from the Kubernetes schemas, so
their KServe structure is checked here and their pod parts (pod fields, the container) are checked
against the core schemas by wrapping them in a Pod. No cluster is reachable from the build hosts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from api.app import create_app
from harness import DEFAULT
from imagetool.images.image_lock import ImageLock
from imagetool.ship import deploy
from tests.api.support import TestClient
from tests.integration.deploy.test_manifests import KUBERNETES_VERSION

KSERVE = Path("deploy/kserve")
# PredictorSpec fields that are KServe's own (ComponentExtensionSpec and the model spec); the rest
# of the predictor is an inlined core PodSpec.
PREDICTOR_EXTENSIONS = {"minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "model"}
# ModelSpec fields beyond the inlined core Container.
MODEL_EXTENSIONS = {"modelFormat", "runtime", "protocolVersion", "storageUri"}


def load(repo_root: Path, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((repo_root / KSERVE / name).read_text())
    return doc


@pytest.fixture
def isvc(repo_root: Path) -> dict[str, Any]:
    return load(repo_root, "inferenceservice.yaml")


@pytest.fixture
def runtime(repo_root: Path) -> dict[str, Any]:
    return load(repo_root, "servingruntime.yaml")


def predictor_as_pod(isvc: dict[str, Any]) -> dict[str, Any]:
    """The predictor's pod as Kubernetes would get it: its pod fields, the model as the container."""
    predictor = isvc["spec"]["predictor"]
    pod_spec = {k: v for k, v in predictor.items() if k not in PREDICTOR_EXTENSIONS}
    container = {k: v for k, v in predictor["model"].items() if k not in MODEL_EXTENSIONS}
    pod_spec["containers"] = [{"name": "kserve-container", **container}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lockstep"}, "spec": pod_spec}


def test_inference_service_is_a_v2_predictor_on_the_lockstep_runtime(
    isvc: dict[str, Any], runtime: dict[str, Any]
) -> None:
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert (runtime["apiVersion"], runtime["kind"]) == ("serving.kserve.io/v1alpha1", "ServingRuntime")
    assert set(isvc["spec"]) == {"predictor"}
    predictor = isvc["spec"]["predictor"]
    assert set(predictor) >= PREDICTOR_EXTENSIONS
    assert predictor["minReplicas"] <= predictor["maxReplicas"]
    model = predictor["model"]
    assert model["protocolVersion"] == "v2"
    assert model["runtime"] == runtime["metadata"]["name"]
    assert "storageUri" not in model  # the image carries the model: no storage initializer
    [supported] = runtime["spec"]["supportedModelFormats"]
    assert model["modelFormat"] == {"name": supported["name"], "version": supported["version"]}
    assert "v2" in runtime["spec"]["protocolVersions"]
    [container] = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container"  # the name KServe merges the model spec into
    assert container["ports"] == model["ports"]


def test_both_pin_the_image_lock_digest(
    repo_root: Path, isvc: dict[str, Any], runtime: dict[str, Any]
) -> None:
    digest = ImageLock.read(repo_root / "image.lock").pinned
    [container] = runtime["spec"]["containers"]
    for image in (isvc["spec"]["predictor"]["model"]["image"], container["image"]):
        assert image == f"lockstep@{digest}"
    assert deploy.stale(digest, repo_root / "deploy") == []
    # And imagetool.ship.deploy sees them: another digest is reported in both files.
    other = deploy.stale("sha256:" + "0" * 64, repo_root / "deploy")
    assert {line.split(":")[0] for line in other} >= {
        str(repo_root / KSERVE / "inferenceservice.yaml"),
        str(repo_root / KSERVE / "servingruntime.yaml"),
    }


def test_pod_parts_are_valid_core_kubernetes(isvc: dict[str, Any], runtime: dict[str, Any]) -> None:
    kubernetes_validate.validate(predictor_as_pod(isvc), KUBERNETES_VERSION, strict=True)
    runtime_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "lockstep-runtime"},
        "spec": {"containers": runtime["spec"]["containers"]},
    }
    kubernetes_validate.validate(runtime_pod, KUBERNETES_VERSION, strict=True)


def test_pod_validation_rejects_a_misspelt_container_field(isvc: dict[str, Any]) -> None:
    isvc["spec"]["predictor"]["model"]["securityContext"]["readOnlyRootFS"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFS"):
        kubernetes_validate.validate(predictor_as_pod(isvc), KUBERNETES_VERSION, strict=True)


def test_hardened_and_sized_as_the_deployment(repo_root: Path, isvc: dict[str, Any]) -> None:
    deployment = yaml.safe_load((repo_root / "deploy/k8s/base/deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    for key in ("securityContext", "automountServiceAccountToken", "enableServiceLinks", "volumes"):
        assert predictor[key] == pod[key], key
    assert predictor["terminationGracePeriodSeconds"] == pod["terminationGracePeriodSeconds"]
    for key in ("securityContext", "resources", "volumeMounts"):
        assert model[key] == container[key], key


def test_probes_and_model_name_are_what_the_service_answers(isvc: dict[str, Any]) -> None:
    """KServe routes /v2/models/<InferenceService name>: the service must use that name, and every
    probe path must answer 200 from the real app once the model is loaded."""
    model = isvc["spec"]["predictor"]["model"]
    env = {e["name"]: e["value"] for e in model["env"]}
    name = isvc["metadata"]["name"]
    assert env["LOCKSTEP_V2_MODEL_NAME"] == name
    port = model["ports"][0]["containerPort"]
    settings = DEFAULT.settings(v2_model_name=name)
    assert settings.port == port  # the image's default port (LOCKSTEP_PORT is not set)
    with TestClient(create_app(settings)) as client:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = model[probe]["httpGet"]
            assert get["port"] == port
            assert client.get(get["path"]).status_code == 200, probe
        assert client.get(f"/v2/models/{name}/ready").status_code == 200
