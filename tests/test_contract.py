"""The contract's dvc.lock reader and its md5-before-unpickle loader, on small files in tmp_path."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import joblib
import pytest

from contract import (
    MODEL_FILE,
    ContractError,
    load_dvc_lock,
    load_verified_pickle,
    locked_md5,
    locked_outs,
    parse_dvc_lock,
)
from tests.helpers import lock_stage_outputs, malicious_pickle
from tests.malformed_locks import BadLock, bad_lock_params


@pytest.fixture
def locked_model(tmp_path: Path) -> Path:
    """tmp_path/models/model.joblib (a small joblib pickle) and its entry in tmp_path/dvc.lock."""
    model = tmp_path / MODEL_FILE
    model.parent.mkdir(parents=True)
    joblib.dump({"weights": [1.0, 2.0]}, model)
    lock_stage_outputs(tmp_path, "train")
    return model


def test_load_verified_pickle_returns_the_object_and_its_locked_md5(
    locked_model: Path, tmp_path: Path
) -> None:
    obj, md5 = load_verified_pickle(locked_model, tmp_path / "dvc.lock")
    assert obj == {"weights": [1.0, 2.0]}
    assert md5 == hashlib.md5(locked_model.read_bytes()).hexdigest()


def test_the_malicious_pickle_does_run_when_loaded_unchecked(tmp_path: Path) -> None:
    """The control for the refusals: the payload the tests swap in really runs code."""
    marker = tmp_path / "payload-ran"
    opened = joblib.load(io.BytesIO(malicious_pickle(marker)))
    opened.close()
    assert marker.exists()


def test_a_pickle_whose_md5_differs_from_the_lock_is_refused_before_it_runs(
    locked_model: Path, tmp_path: Path
) -> None:
    locked = hashlib.md5(locked_model.read_bytes()).hexdigest()
    marker = tmp_path / "payload-ran"
    payload = malicious_pickle(marker)
    locked_model.write_bytes(payload)
    lock = tmp_path / "dvc.lock"
    with pytest.raises(ContractError) as refused:
        load_verified_pickle(locked_model, lock)
    actual = hashlib.md5(payload).hexdigest()
    assert str(refused.value) == (
        f"model {locked_model} has md5 {actual} but {lock} records {locked}: refusing to load it"
    )
    assert not marker.exists()


def test_a_pickle_without_a_lock_entry_is_refused_before_it_runs(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    stray = tmp_path / "models/other.joblib"
    stray.parent.mkdir()
    stray.write_bytes(malicious_pickle(marker))
    (tmp_path / "models/model.joblib").write_bytes(b"")
    lock_stage_outputs(tmp_path, "train")
    lock = tmp_path / "dvc.lock"
    with pytest.raises(ContractError) as refused:
        load_verified_pickle(stray, lock)
    assert str(refused.value) == f"{lock} has no entry for {stray}: refusing an untracked file"
    assert not marker.exists()


def test_a_missing_lock_file_is_refused(locked_model: Path, tmp_path: Path) -> None:
    lock = tmp_path / "elsewhere/dvc.lock"
    with pytest.raises(ContractError, match=r"^cannot read DVC lock file .*elsewhere/dvc\.lock: "):
        load_verified_pickle(locked_model, lock)


def test_locked_bytes_that_do_not_unpickle_give_one_line(tmp_path: Path) -> None:
    model = tmp_path / MODEL_FILE
    model.parent.mkdir(parents=True)
    model.write_bytes(b"not a pickle at all")
    lock_stage_outputs(tmp_path, "train")
    lock = tmp_path / "dvc.lock"
    with pytest.raises(ContractError) as refused:
        load_verified_pickle(model, lock)
    assert str(refused.value).startswith(f"model {model} matches {lock} but cannot be unpickled: ")
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("case", bad_lock_params())
def test_a_malformed_lock_is_refused_with_one_line_naming_the_field(
    case: BadLock, locked_model: Path, tmp_path: Path
) -> None:
    lock = tmp_path / "dvc.lock"
    lock.write_bytes(case.spoil(lock.read_bytes()))
    expected = case.expected(lock, locked_model)
    if case.at_load:
        with pytest.raises(ContractError) as at_load:
            load_dvc_lock(lock)
        assert str(at_load.value) == expected
    else:
        with pytest.raises(ContractError) as at_lookup:
            locked_md5(load_dvc_lock(lock), lock, locked_model)
        assert str(at_lookup.value) == expected
    with pytest.raises(ContractError) as loading:
        load_verified_pickle(locked_model, lock)
    assert str(loading.value) == expected


def test_an_output_without_md5_is_a_valid_lock_and_left_out_of_locked_outs(tmp_path: Path) -> None:
    """DVC records an etag instead of an md5 for some cloud outputs: not an error in itself."""
    text = (
        "schema: '2.0'\nstages:\n  s:\n    cmd: c\n    outs:\n"
        "    - path: a\n      md5: " + "a" * 32 + "\n    - path: b\n      etag: xyz\n"
        "    - path: d\n      md5: " + "d" * 32 + ".dir\n"
    )
    assert locked_outs(parse_dvc_lock(text, tmp_path / "dvc.lock")) == {"a": "a" * 32, "d": "d" * 32 + ".dir"}
