"""The service refuses unverified artifacts with a one-line reason, and never unpickles anything."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from typing import Any

import joblib
import orjson
import pytest

from api.app import create_app
from api.integrity import ModelIntegrityError
from tests.api.support import REPO_ROOT, ArtifactCopy, TestClient


def _outs(lock: dict[str, Any]) -> list[dict[str, Any]]:
    return [out for stage in lock["stages"].values() for out in stage.get("outs", [])]


def flip_a_byte(copy: ArtifactCopy) -> None:
    data = bytearray(copy.model.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.model.write_bytes(bytes(data))


def drop_model_entry(copy: ArtifactCopy) -> None:
    def change(lock: dict[str, Any]) -> None:
        for stage in lock["stages"].values():
            stage["outs"] = [o for o in stage.get("outs", []) if o["path"] != "models/model.joblib"]

    copy.edit_lock(change)


def _relock(copy: ArtifactCopy, path: str, data: bytes) -> None:
    """Write new bytes and record their md5 in dvc.lock, as a careless hand edit plus `dvc commit` would."""
    (copy.root / path).write_bytes(data)
    new_md5 = hashlib.md5(data).hexdigest()

    def change(lock: dict[str, Any]) -> None:
        for out in _outs(lock):
            if out["path"] == path:
                out["md5"] = new_md5

    copy.edit_lock(change)


def flip_an_export_byte(copy: ArtifactCopy) -> None:
    data = bytearray(copy.export.read_bytes())
    data[data.index(b'"coef"') + 20] ^= 0x01
    copy.export.write_bytes(bytes(data))


def export_of_another_model(copy: ArtifactCopy) -> None:
    doc = orjson.loads(copy.export.read_bytes())
    doc["source"]["md5"] = "0" * 32
    _relock(copy, "models/model.json", orjson.dumps(doc))


def export_that_mispredicts(copy: ArtifactCopy) -> None:
    doc = orjson.loads(copy.export.read_bytes())
    doc["intercept"] += 1e-6
    _relock(copy, "models/model.json", orjson.dumps(doc))


def export_with_reordered_features(copy: ArtifactCopy) -> None:
    doc = orjson.loads(copy.export.read_bytes())
    doc["features"].reverse()
    _relock(copy, "models/model.json", orjson.dumps(doc))


def tamper_metadata(copy: ArtifactCopy) -> None:
    meta = orjson.loads(copy.metadata.read_bytes())
    meta["features"].reverse()  # would silently scramble every prediction if it were trusted
    copy.metadata.write_bytes(orjson.dumps(meta))


def delete_lock(copy: ArtifactCopy) -> None:
    copy.lock.unlink()


REFUSALS = [
    pytest.param(flip_a_byte, "has md5", id="flipped-byte"),
    pytest.param(drop_model_entry, "has no entry for", id="missing-lock-entry"),
    pytest.param(flip_an_export_byte, "model export", id="flipped-export-byte"),
    pytest.param(
        export_of_another_model, "was exported from a model with md5 000", id="export-of-other-model"
    ),
    pytest.param(export_that_mispredicts, "served probabilities differ", id="export-mispredicts"),
    pytest.param(export_with_reordered_features, "features differ from the metadata", id="export-features"),
    pytest.param(tamper_metadata, "metadata", id="tampered-metadata"),
    pytest.param(delete_lock, "cannot read DVC lock file", id="no-dvc-lock"),
]


@pytest.mark.parametrize(("tamper", "reason"), REFUSALS)
def test_lifespan_refuses_without_unpickling(
    artifact_copy: ArtifactCopy, monkeypatch: pytest.MonkeyPatch, tamper: Any, reason: str
) -> None:
    tamper(artifact_copy)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("an unverified model file was unpickled")

    monkeypatch.setattr(joblib, "load", forbidden)
    app = create_app(artifact_copy.settings())
    with pytest.raises(ModelIntegrityError, match=reason) as refused, TestClient(app):
        pass
    assert "\n" not in str(refused.value)


def test_untampered_copy_is_served(artifact_copy: ArtifactCopy) -> None:
    with TestClient(create_app(artifact_copy.settings())) as client:
        assert client.get("/readyz").status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize(("tamper", "reason"), REFUSALS)
def test_python_m_api_exits_nonzero_with_one_line(
    artifact_copy: ArtifactCopy, tamper: Any, reason: str
) -> None:
    tamper(artifact_copy)
    env = {**os.environ, **artifact_copy.env(), "LOCKSTEP_PORT": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "api"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("lockstep: refusing to start:")
    assert reason in lines[0]
    assert done.stdout == ""


@pytest.mark.slow
def test_bad_setting_is_one_line(artifact_copy: ArtifactCopy) -> None:
    env = {**os.environ, **artifact_copy.env(), "LOCKSTEP_PORT": "not-a-port"}
    done = subprocess.run(
        [sys.executable, "-m", "api"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("lockstep: bad setting LOCKSTEP_PORT: ")
