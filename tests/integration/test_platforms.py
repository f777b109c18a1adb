"""linux/arm64 beside linux/amd64: one model, one recipe, each platform's digest locked and rebuilt,
the index over both, the arm64 image serving under emulation, and the refusals (no binfmt handler, a
store without an arm64 input, an unknown platform), each one line and exit 2.

The arm64 image is built once per session (~50 s under qemu on these hosts) and shared."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contract import MODEL_FILE, SCHEMA_FILE, SERVING_FILE, TEST_CSV, load_verified_pickle
from harness import REPO_ROOT as ROOT
from harness import free_port, venv_env
from imagetool import platforms
from imagetool.common import InputError
from imagetool.images import image, ocidiff
from imagetool.images.image_lock import ImageLock, computed_index
from imagetool.platforms import AMD64, ARM64
from imagetool.ship.container import Container, made_run
from pipeline.data import read_table
from pipeline.features import model_input
from pipeline.schema import read_schema
from tests.integration.conftest import LockedBuild

LOCK = json.loads((ROOT / "image.lock").read_text())


# --- the table and the lock (no build) ----------------------------------------------------------


def test_amd64_keeps_the_paths_it_had_before_arm64() -> None:
    """amd64's store, base and wheels did not move, so neither did its digest."""
    assert AMD64.base_lock(ROOT) == ROOT / "image/base.lock.json"
    assert AMD64.rootfs(ROOT / "build") == ROOT / "build/base/rootfs.tar"
    assert AMD64.wheels(ROOT / "build") == ROOT / "build/wheels"
    assert image.oci_tar(AMD64).name == "lockstep.oci.tar"
    assert ARM64.base_lock(ROOT) == ROOT / "image/base.arm64.lock.json"
    assert ARM64.wheels(ROOT / "build") == ROOT / "build/wheels-arm64"
    assert image.latest_tag(ARM64) == "lockstep:latest-arm64"


def test_wheel_tags_are_the_platforms_own() -> None:
    assert all(t.endswith("_aarch64") for t in ARM64.wheel_platform_tags(36))
    assert all(t.endswith("_x86_64") for t in AMD64.wheel_platform_tags(36))
    assert "manylinux_2_28_aarch64" in ARM64.wheel_platform_tags(36)
    assert "manylinux_2_37_aarch64" not in ARM64.wheel_platform_tags(36)  # Debian 12's glibc is 2.36


def test_a_platform_is_chosen_by_flag_then_environment_then_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATFORM", "")
    assert platforms.chosen("") == [AMD64, ARM64]
    assert platforms.chosen("all") == [AMD64, ARM64]
    assert platforms.chosen("linux/arm64") == [ARM64]
    monkeypatch.setenv("PLATFORM", "linux/arm64")
    assert platforms.chosen("") == [ARM64]
    assert platforms.chosen("linux/amd64") == [AMD64]
    with pytest.raises(InputError, match=r"unknown platform 'linux/s390x': choose linux/amd64, linux/arm64"):
        platforms.chosen("linux/s390x")


def test_image_lock_records_each_platform_and_the_index_over_them() -> None:
    arm = ImageLock(LOCK).record(ARM64)
    assert arm["inputs"]["platform"] == "linux/arm64"
    assert LOCK["inputs"]["platform"] == "linux/amd64"
    # One model, one source tree, one serve lock: only the base (and so its epoch) differs.
    for key in ("model_md5", "source_tree_sha256", "requirements_sha256"):
        assert arm["inputs"][key] == LOCK["inputs"][key], key
    index = computed_index(LOCK)
    assert index == LOCK["index"]
    assert index is not None
    assert index["manifests"] == {
        "linux/amd64": {"digest": LOCK["digest"], "size": LOCK["manifest_size"]},
        "linux/arm64": {"digest": arm["digest"], "size": arm["manifest_size"]},
    }
    body = json.loads(platforms.index_bytes(index["manifests"]))
    assert body["mediaType"] == platforms.INDEX_MEDIA_TYPE
    assert [m["platform"] for m in body["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux"},
    ]


def test_the_index_follows_every_manifest() -> None:
    other = json.loads(json.dumps(LOCK))
    other["platforms"]["linux/arm64"]["digest"] = "sha256:" + "0" * 64
    changed = computed_index(other)
    assert changed is not None
    assert changed["digest"] != LOCK["index"]["digest"]
    del other["platforms"]["linux/arm64"]["manifest_size"]
    assert computed_index(other) is None  # no index until every platform is recorded


def test_a_lock_without_the_platform_names_the_command_that_adds_it() -> None:
    without = {k: v for k, v in LOCK.items() if k != "platforms"}
    with pytest.raises(
        InputError, match=r"no linux/arm64 record; run `make lock-image PLATFORM=linux/arm64`"
    ):
        ImageLock(without).record(ARM64)


# --- refusals, each one line and exit 2 ----------------------------------------------------------


def _imagetool(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagetool", *args],
        cwd=ROOT,
        env=venv_env(**env),
        capture_output=True,
        text=True,
        check=False,
    )


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return errors[0]


def test_without_a_binfmt_handler_arm64_is_refused_saying_how_to_register_one(tmp_path: Path) -> None:
    """An empty binfmt_misc folder stands for a host where nobody registered qemu."""
    if ARM64.native():
        pytest.skip("an aarch64 host runs arm64 natively")
    for args in (
        ("image", "build", "--platform", "linux/arm64"),
        ("base", "lock", "--platform", "linux/arm64"),
    ):
        line = _one_error_line(_imagetool(*args, LOCKSTEP_BINFMT_DIR=str(tmp_path)))
        assert "linux/arm64: this x86_64 host has no binfmt_misc handler for aarch64" in line
        assert "`make binfmt`" in line
        assert "`make image PLATFORM=linux/amd64` works without it" in line
    # ...and the native platform does not need one.
    proc = _imagetool("image", "check", "--platform", "linux/amd64", LOCKSTEP_BINFMT_DIR=str(tmp_path))
    assert proc.returncode == 0, proc.stderr


def test_an_unknown_platform_is_one_line() -> None:
    line = _one_error_line(_imagetool("image", "check", "--platform", "linux/riscv64"))
    assert line == "error: unknown platform 'linux/riscv64': choose linux/amd64, linux/arm64"


def test_a_store_without_an_arm64_input_names_it(tmp_path: Path) -> None:
    """A repo copy whose store lacks one arm64 wheel, offline: the wheel is named, nothing fetched."""
    repo = tmp_path / "repo"
    for item in ("imagetool", "image", "requirements", "contract", "store.dvc", "requirements.txt"):
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, repo / item)
        else:
            shutil.copy2(src, repo / item)
    store = repo / "store"
    shutil.copytree(ROOT / "store/arm64", store / "arm64", copy_function=os.link)  # the whole group
    [victim] = sorted((store / "arm64/wheels").glob("numpy-*.whl"))
    victim.unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "imagetool", "wheels", "download", "--platform", "linux/arm64"],
        cwd=repo,
        env=venv_env(LOCKSTEP_OFFLINE="1", PYTHONPATH=str(repo)),
        capture_output=True,
        text=True,
        check=False,
    )
    line = _one_error_line(proc)
    assert f"store/arm64/wheels/{victim.name}" in line
    assert not (repo / "build/wheels-arm64" / victim.name).exists()


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
