"""Every promised model family builds into an image that reproduces its own digest and serves.

One default-model image is covered by the other image tests; here each other family is trained by
the real pipeline in a repo copy, built twice (the second --no-cache, as `make verify` does: same
digest), started hardened, and asked for a prediction. The exact-path family's image carries
scikit-learn and the pickle; the ONNX families' images carry neither.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import free_port
from harness.families import FAMILIES
from imagetool.images import image, recipe
from imagetool.platforms import ARM64
from imagetool.ship.container import hardened_container, made_run
from tests.integration.conftest import dvc

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# The required families besides the default (LogisticRegression), and one exact-path model.
IMAGE_FAMILIES = [
    "random-forest",
    "hist-gradient-boosting",
    "gradient-boosting",
    "hist-gradient-boosting-regressor",
    "xgboost",
    "lightgbm",
    "lightgbm-exact",
    "nearest-centroid",
]


def _python(container_id: str, code: str) -> str:
    done = subprocess.run(
        ["docker", "exec", container_id, "python", "-c", code], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _predict_example(url: str, repo: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model's metadata and the service's prediction for its example row."""
    meta = json.loads((repo / "models/metadata.json").read_text())
    body = json.dumps({"instances": [meta["example"]]}).encode()
    request = urllib.request.Request(
        f"{url}/predict", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as reply:
        [prediction] = json.load(reply)["predictions"]
    return meta, prediction


@pytest.mark.parametrize("name", IMAGE_FAMILIES)
def test_family_image_reproduces_its_digest_and_serves(
    repo_copy: Callable[[], Path], tmp_path: Path, name: str
) -> None:
    family = FAMILIES[name]
    repo = repo_copy()
    family.write_params(repo / "params.yaml", repo / "params.yaml")
    dvc(repo, "repro", "--quiet")
    serving = json.loads((repo / "models/serving.json").read_text())
    assert serving["path"] == family.path

    image.preflight(repo, allow_untracked=True)
    inputs = image.current_inputs(repo)
    first = image.buildx(repo, inputs, tmp_path / "first.oci.tar", no_cache=False)
    second = image.buildx(repo, inputs, tmp_path / "second.oci.tar", no_cache=True)
    assert second.digest == first.digest, "a --no-cache rebuild of the same inputs gave another digest"

    tag = f"lockstep:family-{name}-{os.getpid()}"
    image.load_and_tag(first, [tag])
    try:
        with hardened_container(tag) as running:
            meta, prediction = _predict_example(running.url, repo)
            if meta["task"] == "regression":
                assert isinstance(prediction["value"], float)
            else:
                assert prediction["label"] in meta["classes"]
                assert abs(sum(prediction["probabilities"].values()) - 1.0) < 1e-5
            with urllib.request.urlopen(f"{running.url}/model", timeout=10) as reply:
                assert json.load(reply)["serving"]["path"] == family.path
            listing = "import os, json; print(json.dumps(sorted(os.listdir('/app/models'))))"
            shipped = json.loads(_python(running.id, listing))
            assert shipped == sorted(Path(f).name for f in recipe.model_files(repo))
            libs = ("sklearn", "xgboost", "lightgbm")
            probe = f"import importlib.util as u; print([bool(u.find_spec(m)) for m in {libs!r}])"
            found = json.loads(_python(running.id, probe).lower())
            libraries = dict(zip(libs, found, strict=True))
            library = family.estimator.split(".")[0]
            # The exact path carries scikit-learn, and the model's own library only when it needs it.
            assert libraries == {
                lib: family.path == "sklearn" and lib in ("sklearn", library) for lib in libraries
            }
    finally:
        subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)


def test_exact_path_family_serves_on_arm64(repo_copy: Callable[[], Path], tmp_path: Path) -> None:
    """A model no converter takes (NearestCentroid) goes through on arm64 too: its image installs
    scikit-learn's aarch64 wheels from the store under emulation, and `make run PLATFORM=linux/arm64`
    serves the pickle after its start-up check."""
    family = FAMILIES["nearest-centroid"]
    repo = repo_copy()
    family.write_params(repo / "params.yaml", repo / "params.yaml")
    dvc(repo, "repro", "--quiet")
    assert json.loads((repo / "models/serving.json").read_text())["path"] == "sklearn"
    image.preflight(repo, allow_untracked=True, plat=ARM64)
    inputs = image.current_inputs(repo, ARM64)
    built = image.buildx(repo, inputs, tmp_path / "arm64.oci.tar", no_cache=False, plat=ARM64)
    assert built.oci.config["architecture"] == "arm64"
    tag = f"lockstep:family-exact-arm64-{os.getpid()}"
    image.load_and_tag(built, [tag])
    try:
        with made_run(
            tag, f"lockstep-exact-arm64-{os.getpid()}", free_port(), timeout=180, platform=ARM64.name
        ) as c:
            meta, prediction = _predict_example(c.url, repo)
            assert prediction["label"] in meta["classes"]
            assert _python(c.id, "import platform; print(platform.machine())") == "aarch64"
            with urllib.request.urlopen(f"{c.url}/model", timeout=10) as reply:
                assert json.load(reply)["serving"]["path"] == "sklearn"
    finally:
        subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)
