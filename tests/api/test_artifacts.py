"""The service refuses unverified or inconsistent artifacts with a one-line reason, and never
unpickles anything before its md5 matched dvc.lock."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from operator import attrgetter
from pathlib import Path
from typing import Any

import joblib
import orjson
import pytest

from api.app import create_app
from contract import ContractError
from harness import REPO_ROOT, Artifacts
from tests.api.support import TestClient
from tests.malformed_locks import BAD_LOCKS, BadLock

Tamper = Callable[[Artifacts], None]


def flip_a_byte(pick: Callable[[Artifacts], Any]) -> Tamper:
    def tamper(copy: Artifacts) -> None:
        path = pick(copy)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))

    return tamper


def drop_lock_entry(relative: str) -> Tamper:
    def tamper(copy: Artifacts) -> None:
        def change(lock: dict[str, Any]) -> None:
            for stage in lock["stages"].values():
                stage["outs"] = [o for o in stage.get("outs", []) if o["path"] != relative]

        copy.edit_lock(change)

    return tamper


def edit_json(pick: Callable[[Artifacts], Path], change: Callable[[dict[str, Any]], object]) -> Tamper:
    """Change a JSON artifact and record its new md5, as a hand edit plus `dvc commit` would."""

    def tamper(copy: Artifacts) -> None:
        path = pick(copy)
        doc = orjson.loads(path.read_bytes())
        change(doc)
        copy.relock(path, orjson.dumps(doc))

    return tamper


def edit_serving(change: Callable[[dict[str, Any]], object]) -> Tamper:
    return edit_json(lambda copy: copy.serving, change)


def edit_metadata(change: Callable[[dict[str, Any]], object]) -> Tamper:
    return edit_json(lambda copy: copy.metadata, change)


def relock_raw(pick: Callable[[Artifacts], Any], data: bytes) -> Tamper:
    return lambda copy: copy.relock(pick(copy), data)


def shift_expected(doc: dict[str, Any]) -> None:
    """Move every recorded output by 1e-3: far outside any gate tolerance."""
    first = doc["check"]["expected"][0]
    if isinstance(first, list):
        doc["check"]["expected"][0] = [p + 1e-3 for p in first]
    else:
        doc["check"]["expected"][0] = first + 1e-3


def reorder_metadata_features(copy: Artifacts) -> None:
    meta = copy.metadata_document()
    meta["features"].reverse()  # would scramble every prediction if it were trusted
    copy.metadata.write_bytes(orjson.dumps(meta))


REFUSALS = [
    pytest.param(flip_a_byte(lambda c: c.serving), "serving", "has md5", id="serving-md5"),
    pytest.param(flip_a_byte(lambda c: c.metadata), "metadata", "has md5", id="metadata-md5"),
    pytest.param(reorder_metadata_features, "metadata", "has md5", id="metadata-edited"),
    pytest.param(drop_lock_entry("models/model.joblib"), "", "has no entry for", id="no-lock-entry"),
    pytest.param(lambda c: c.lock.unlink(), "", "cannot read DVC lock file", id="no-dvc-lock"),
    pytest.param(
        relock_raw(lambda c: c.serving, b"{not json"), "", "is not valid JSON", id="serving-not-json"
    ),
    pytest.param(edit_serving(lambda d: d.pop("check")), "", "check is missing", id="serving-no-check"),
    pytest.param(edit_serving(lambda d: d.update(path="pmml")), "", "path 'pmml'", id="serving-bad-path"),
    pytest.param(
        edit_serving(lambda d: d["gate"].update(tolerance=-1)), "", "gate.tolerance", id="serving-tolerance"
    ),
    pytest.param(
        edit_serving(lambda d: d["check"]["expected"].pop()), "", "one entry per check row", id="check-short"
    ),
    pytest.param(edit_serving(shift_expected), "", "differs from scikit-learn's", id="check-not-reproduced"),
    pytest.param(
        edit_serving(lambda d: d["classes"].reverse()), "", "differ from the metadata's", id="serving-classes"
    ),
    pytest.param(
        edit_serving(lambda d: d.update(task="regression")), "", "task 'regression'", id="serving-task"
    ),
    pytest.param(
        edit_metadata(lambda d: d.update(schema_version=1)), "", "schema_version 1 is not 2", id="metadata-v1"
    ),
    pytest.param(
        edit_metadata(lambda d: d["features"][0].update(kind="text")), "", "kind 'text'", id="metadata-kind"
    ),
    pytest.param(
        edit_metadata(lambda d: d.update(task="clustering")), "", "task 'clustering'", id="metadata-task"
    ),
    pytest.param(
        edit_serving(lambda d: d["model"].update(md5="0" * 32)),
        "",
        "written for a model with md5 000",
        id="serving-for-another-model",
    ),
]
ONNX_REFUSALS = [
    pytest.param(flip_a_byte(lambda c: c.onnx), "onnx", "has md5", id="onnx-md5"),
    pytest.param(
        edit_serving(lambda d: d["onnx"]["inputs"].pop()), "", "feed every feature", id="onnx-input-missing"
    ),
    pytest.param(
        edit_serving(lambda d: d["onnx"]["outputs"].update(probabilities="nope", value="nope")),
        "",
        "no output named 'nope'",
        id="onnx-output-unknown",
    ),
    pytest.param(
        edit_serving(lambda d: d["onnx"]["inputs"][0].update(type="int64")),
        "",
        "the service feeds",
        id="onnx-input-type",
    ),
    pytest.param(
        edit_serving(lambda d: d["onnx"]["inputs"][0].update(type=[])),
        "",
        "has type []; the service feeds",
        id="onnx-input-type-a-list",
    ),
    pytest.param(
        relock_raw(lambda c: c.onnx, b"not an onnx graph"),
        "",
        "describes an ONNX graph with md5",
        id="onnx-replaced",
    ),
]


def refused(copy: Artifacts, monkeypatch: pytest.MonkeyPatch) -> ContractError:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model file was unpickled although start-up was refused")

    monkeypatch.setattr(joblib, "load", forbidden)
    with pytest.raises(ContractError) as refusal, TestClient(create_app(copy.settings())):
        pass
    assert "\n" not in str(refusal.value)
    return refusal.value


@pytest.mark.parametrize(("tamper", "named", "reason"), REFUSALS)
def test_lifespan_refuses_without_unpickling(
    artifact_copy: Artifacts, monkeypatch: pytest.MonkeyPatch, tamper: Tamper, named: str, reason: str
) -> None:
    if artifact_copy.serving_document()["path"] == "sklearn" and "differs" in reason:
        pytest.skip("on the exact path the check runs the unpickled model")  # see test_families
    tamper(artifact_copy)
    error = refused(artifact_copy, monkeypatch)
    assert reason in str(error)
    if named:  # the message names the file
        assert str(getattr(artifact_copy, named)) in str(error)


@pytest.mark.parametrize(("tamper", "named", "reason"), ONNX_REFUSALS)
def test_onnx_path_refuses_a_graph_it_cannot_trust(
    artifact_copy: Artifacts, monkeypatch: pytest.MonkeyPatch, tamper: Tamper, named: str, reason: str
) -> None:
    if artifact_copy.serving_document()["path"] != "onnx":
        pytest.skip("the default model does not take the ONNX path")
    tamper(artifact_copy)
    error = refused(artifact_copy, monkeypatch)
    assert reason in str(error)
    if named:
        assert str(getattr(artifact_copy, named)) in str(error)


def test_onnx_path_serves_without_the_pickle_it_never_loads(artifact_copy: Artifacts) -> None:
    """The image ships no model.joblib on the ONNX path: its md5 (the version) comes from dvc.lock."""
    if artifact_copy.serving_document()["path"] != "onnx":
        pytest.skip("the default model does not take the ONNX path")
    version = hashlib.md5(artifact_copy.model.read_bytes()).hexdigest()
    artifact_copy.model.unlink()
    with TestClient(create_app(artifact_copy.settings())) as client:
        assert client.get("/readyz").status_code == 200
        assert client.get("/model").json()["model_version"] == version


def test_untampered_copy_is_served(artifact_copy: Artifacts) -> None:
    with TestClient(create_app(artifact_copy.settings())) as client:
        assert client.get("/readyz").status_code == 200


def python_m_api(copy: Artifacts) -> subprocess.CompletedProcess[str]:
    """`python -m api` serving `copy` (any free port): a tampered copy must stop it before it listens."""
    env = {**os.environ, **copy.env(), "LOCKSTEP_PORT": "0"}
    return subprocess.run(
        [sys.executable, "-m", "api"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
@pytest.mark.parametrize(("tamper", "named", "reason"), REFUSALS[:8])
def test_python_m_api_exits_2_with_one_line(
    artifact_copy: Artifacts, tamper: Tamper, named: str, reason: str
) -> None:
    tamper(artifact_copy)
    done = python_m_api(artifact_copy)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("lockstep: refusing to start:")
    assert reason in lines[0]
    assert done.stdout == ""


@pytest.mark.slow
def test_bad_setting_is_one_line(artifact_copy: Artifacts) -> None:
    env = {**os.environ, **artifact_copy.env(), "LOCKSTEP_PORT": "not-a-port"}
    done = subprocess.run(
        [sys.executable, "-m", "api"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("lockstep: bad setting LOCKSTEP_PORT: ")


DROP = object()  # set_field's value that removes the field


def set_field(document: str, path: str, value: object) -> Tamper:
    """Set (or DROP) one field of metadata.json or serving.json, addressed by a dotted path whose list
    indices are numbers, and relock the file."""

    def change(doc: Any) -> None:
        *parents, last = path.split(".")
        for key in parents:
            doc = doc[int(key)] if isinstance(doc, list) else doc[key]
        where: Any = int(last) if isinstance(doc, list) else last
        if value is DROP:
            del doc[where]
        else:
            doc[where] = value

    return edit_json(lambda copy: getattr(copy, document), change)


# Malformed artifacts whose md5 dvc.lock does record (a bad export, or a hand edit and `dvc commit`):
# the exact one-line refusal, naming the file and the field.
MALFORMED_FIELDS = [  # (document, field, new value or DROP, the refusal after "<document path>: ")
    ("metadata", "features", DROP, "features is missing or not a list"),
    ("metadata", "features", {}, "features is missing or not a list"),
    ("metadata", "features.0.name", 5, "features[0] has no name"),
    ("metadata", "task", DROP, "task None is not one of ('binary', 'multiclass', 'regression')"),
    ("metadata", "classes", "benign", "classes is missing or not a list"),
    ("metadata", "example", DROP, "example is missing or not an object"),
    ("metadata", "example", [], "example is missing or not an object"),
    ("serving", "path", DROP, "path None is not one of ('onnx', 'sklearn')"),
    ("serving", "classes", 5, "classes must be a list or null"),
    ("serving", "gate", DROP, "gate is missing or not an object"),
    ("serving", "gate", [], "gate is missing or not an object"),
    ("serving", "missing_string", DROP, "missing_string must be a string"),
    ("serving", "check.rows", "all", "check.rows must be a non-empty list of objects"),
    ("serving", "check.labels.0", [], "check.labels must name one of the classes per check row"),
    ("serving", "model", DROP, "model is missing or not an object"),
]
NOT_OBJECTS = [  # (document, bytes recorded in dvc.lock, the refusal after "<document path> ")
    ("metadata", b"{x", "is not valid JSON"),
    ("metadata", b"[]", "is not a JSON object"),
    ("serving", b"{x", "is not valid JSON"),
    ("serving", b"[1]", "is not a JSON object"),
]
MALFORMED_DOCUMENTS = [  # {metadata} and {serving} stand for the documents' paths
    *(
        pytest.param(
            relock_raw(attrgetter(document), data),
            f"{{{document}}} {message}",
            id=f"{document}-{message.split()[-1].lower()}",
        )
        for document, data, message in NOT_OBJECTS
    ),
    *(
        pytest.param(
            set_field(document, field, value),
            f"{{{document}}}: {message}",
            id=f"{document}-{field}-{'dropped' if value is DROP else type(value).__name__}",
        )
        for document, field, value, message in MALFORMED_FIELDS
    ),
]


def malformed_lock(case: BadLock) -> Tamper:
    def tamper(copy: Artifacts) -> None:
        copy.lock.write_bytes(case.spoil(copy.lock.read_bytes()))

    return tamper


def expected_refusal(copy: Artifacts, message: str) -> str:
    return message.format(metadata=copy.metadata, serving=copy.serving, lock=copy.lock, model=copy.model)


STARTUP_REFUSALS = [
    *MALFORMED_DOCUMENTS,
    *(
        pytest.param(malformed_lock(case), case.message, id=f"lock-{name}")
        for name, case in BAD_LOCKS.items()
    ),
]


@pytest.mark.parametrize(("tamper", "message"), STARTUP_REFUSALS)
def test_lifespan_refuses_malformed_artifacts_with_the_exact_line(
    artifact_copy: Artifacts, monkeypatch: pytest.MonkeyPatch, tamper: Tamper, message: str
) -> None:
    tamper(artifact_copy)
    assert str(refused(artifact_copy, monkeypatch)) == expected_refusal(artifact_copy, message)


@pytest.mark.slow
@pytest.mark.parametrize(("tamper", "message"), STARTUP_REFUSALS)
def test_python_m_api_refuses_malformed_artifacts_with_exit_2_and_the_exact_line(
    artifact_copy: Artifacts, tamper: Tamper, message: str
) -> None:
    tamper(artifact_copy)
    done = python_m_api(artifact_copy)
    assert done.returncode == 2
    assert done.stderr == f"lockstep: refusing to start: {expected_refusal(artifact_copy, message)}\n"
    assert done.stdout == ""
