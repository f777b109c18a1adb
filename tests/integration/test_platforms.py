"""linux/arm64 beside linux/amd64: one model, one recipe, each platform's digest locked and rebuilt,
and the arm64 image serving under emulation (the platform table and the refusals are
tests/imagetool/test_platforms.py's).

The arm64 image is built once per session (~50 s under qemu on these hosts) and shared."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from contract import MODEL_FILE, SCHEMA_FILE, SERVING_FILE, TEST_CSV, load_verified_pickle
from harness import REPO_ROOT as ROOT
from harness import free_port
from imagetool.images import image, ocidiff
from imagetool.images.image_lock import ImageLock
from imagetool.platforms import ARM64
from imagetool.ship.container import Container, made_run
from pipeline.data import read_table
from pipeline.features import model_input
from pipeline.schema import read_schema
from tests.integration.conftest import LockedBuild

LOCK = json.loads((ROOT / "image.lock").read_text())


# --- the arm64 image: rebuilt, compared, served --------------------------------------------------


@pytest.fixture(scope="session")
def arm64_build(tmp_path_factory: pytest.TempPathFactory) -> ocidiff.OciImage:
    """One --no-cache arm64 build of the real tree, under emulation (the expensive part)."""
    if ARM64.runnable_problem():
        pytest.fail(ARM64.runnable_problem() or "")  # `make test` registers the handler (host-tools)
    out = tmp_path_factory.mktemp("oci-arm64")
    image.preflight(ROOT, plat=ARM64)
    result = image.buildx(ROOT, image.current_inputs(ROOT, ARM64), out / "arm64.oci.tar", True, plat=ARM64)
    return result.oci


def test_arm64_rebuilds_to_its_locked_digest(arm64_build: ocidiff.OciImage) -> None:
    assert arm64_build.digest == ImageLock(LOCK).record(ARM64)["digest"]
    assert arm64_build.manifest["config"]["digest"]  # a real single-platform manifest
    assert arm64_build.config["architecture"] == "arm64"


def _files(oci: ocidiff.OciImage, layer: int) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(ocidiff.layer_bytes(oci, layer))) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isreg()}  # type: ignore[union-attr]


def test_both_platforms_ship_the_same_model_and_service_bytes(
    arm64_build: ocidiff.OciImage, locked_builds: LockedBuild
) -> None:
    """The last layers (api/ and contract/ byte-compiled, then the model files and dvc.lock) hold
    the same files, byte for byte, on both platforms: one model, trained once by the amd64
    toolchain. (The layer blobs differ only by their entries' mtimes: each platform's base has
    its own SOURCE_DATE_EPOCH.)"""
    amd64 = locked_builds.first  # the session's amd64 rebuild (tests/integration/conftest.py)
    assert amd64.digest == LOCK["digest"]
    model_amd, model_arm = _files(amd64, -1), _files(arm64_build, -1)
    assert {n for n in model_amd if n.startswith("app/models/")} >= {
        "app/models/model.onnx",
        "app/models/serving.json",
    }
    assert model_arm == model_amd
    assert _files(arm64_build, -2) == _files(amd64, -2)  # api/ and contract/, .pyc included


def test_arm64_image_is_at_most_300_mb(arm64_build: ocidiff.OciImage) -> None:
    assert ocidiff.uncompressed_size(arm64_build) <= 300e6


@pytest.fixture(scope="session")
def arm64_container(arm64_build: ocidiff.OciImage) -> Iterator[Container]:
    tag = f"lockstep:test-arm64-{os.getpid()}"
    image.load_and_tag(image.BuildResult(arm64_build.digest, arm64_build, 0.0), [tag])
    try:
        # `make run PLATFORM=linux/arm64`: the hardened flags, plus what emulation needs.
        with made_run(
            tag, f"lockstep-arm64-{os.getpid()}", free_port(), timeout=120, platform="linux/arm64"
        ) as c:
            yield c
    finally:
        subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)


def _post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def test_arm64_container_runs_hardened_and_as_arm64(arm64_container: Container) -> None:
    info = json.loads(
        subprocess.run(
            ["docker", "inspect", arm64_container.id], capture_output=True, text=True, check=True
        ).stdout
    )[0]
    host = info["HostConfig"]
    assert host["ReadonlyRootfs"]
    assert host["CapDrop"] == ["ALL"]
    assert host["Memory"] == 336 * 2**20
    assert info["Config"]["User"] == "10001:10001"
    arch = subprocess.run(
        ["docker", "exec", arm64_container.id, "python", "-c", "import platform; print(platform.machine())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert arch == "aarch64"


def test_arm64_serves_predict_and_v2_like_the_model(arm64_container: Container) -> None:
    """Ready means its start-up check passed: onnxruntime's aarch64 kernels reproduced the check
    rows within the gate's tolerance. Then the whole test split, through both endpoints."""
    schema = read_schema(ROOT / SCHEMA_FILE)
    test = read_table(ROOT / TEST_CSV, schema)
    model, _ = load_verified_pickle(ROOT / MODEL_FILE, ROOT / "dvc.lock")
    rows = [{k: (None if v != v else v) for k, v in row.items()} for row in test.X.to_dict("records")]
    served = _post(f"{arm64_container.url}/predict", {"instances": rows})["predictions"]
    X = model_input(test.X, schema)
    tolerance = json.loads((ROOT / SERVING_FILE).read_text())["gate"]["tolerance"]
    classes = [str(c) for c in model.classes_]
    assert [p["label"] for p in served] == [str(c) for c in model.predict(X)]
    got = np.array([[p["probabilities"][c] for c in classes] for p in served])
    np.testing.assert_allclose(got, model.predict_proba(X), rtol=0, atol=tolerance)

    names = list(rows[0])
    inputs = [
        {"name": n, "shape": [len(rows), 1], "datatype": "FP64", "data": [r[n] for r in rows]} for n in names
    ]
    outputs = {
        o["name"]: o
        for o in _post(f"{arm64_container.url}/v2/models/lockstep/infer", {"inputs": inputs})["outputs"]
    }
    assert outputs["label"]["data"] == [p["label"] for p in served]

    # The same rows by position parse with simdjson's aarch64 (NEON) kernel (api/dense_json.py), the
    # named rows above with orjson: both must read every number to the same float64, so the answers
    # are equal to the last bit. The V2 columns above took the dense parse too.
    assert all(isinstance(v, float | int) for r in rows for v in r.values())  # numbers only: the dense path
    positional = _post(f"{arm64_container.url}/predict", {"instances": [[r[n] for n in names] for r in rows]})
    assert positional["predictions"] == served
    v2_probabilities = np.array(outputs["probabilities"]["data"], dtype=np.float64).reshape(got.shape)
    assert np.array_equal(v2_probabilities, got)  # the V2 columns' dense parse, against orjson's rows
    # The third form the dense parse reads: one nested [N, F] tensor (its brackets counted per row).
    matrix = {"name": "input-0", "shape": [len(rows), len(names)], "datatype": "FP64"}
    matrix["data"] = [[r[n] for n in names] for r in rows]
    nested = _post(f"{arm64_container.url}/v2/models/lockstep/infer", {"inputs": [matrix]})["outputs"]
    [nested_probabilities] = [o["data"] for o in nested if o["name"] == "probabilities"]
    assert np.array_equal(np.array(nested_probabilities, dtype=np.float64).reshape(got.shape), got)
