"""The contract's dvc.lock reader and its md5- and sha256-before-unpickle loader, on small files in
tmp_path."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import joblib
import pytest

from contract import (
    MODEL_FILE,
    MODEL_SHA256_FILE,
    ContractError,
    load_dvc_lock,
    load_verified_pickle,
    locked_md5,
    locked_outs,
    parse_dvc_lock,
    sha256_lines,
    verified_bytes,
)
from harness import lock_stage_outputs, malicious_pickle
from tests.malformed_locks import BadLock, bad_lock_params


def lock_model(root: Path, data: bytes) -> Path:
    """root/models/model.joblib with `data`, its sha256 in root/models/model.sha256 (as train
    writes them) and both files' md5s in root/dvc.lock (as dvc repro records them)."""
    model = root / MODEL_FILE
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(data)
    (root / MODEL_SHA256_FILE).write_text(sha256_lines({MODEL_FILE: data}))
    lock_stage_outputs(root, "train")
    return model


@pytest.fixture
def locked_model(tmp_path: Path) -> Path:
    """tmp_path/models/model.joblib (a small joblib pickle), recorded as train and dvc repro do."""
    buffer = io.BytesIO()
    joblib.dump({"weights": [1.0, 2.0]}, buffer)
    return lock_model(tmp_path, buffer.getvalue())


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
    lock_model(tmp_path, b"")
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
    model = lock_model(tmp_path, b"not a pickle at all")
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


# --- an md5 twin: same md5, other bytes ---------------------------------------------------------

# The published identical-prefix MD5 collision of Wang, Feng, Lai and Yu (2004), in the form Peter
# Selinger's "MD5 collision demo" shows it: two 128-byte blocks that differ in 6 bytes and share the
# md5 79054025255fb1a26e4bc422aef54eb4. Whatever follows both unchanged keeps the md5s equal (md5
# hashes block by block), which is how a twin of a pickle is made from a colliding prefix.
COLLISION_A = bytes.fromhex(
    "d131dd02c5e6eec4693d9a0698aff95c2fcab58712467eab4004583eb8fb7f89"
    "55ad340609f4b30283e488832571415a085125e8f7cdc99fd91dbdf280373c5b"
    "d8823e3156348f5bae6dacd436c919c6dd53e2b487da03fd02396306d248cda0"
    "e99f33420f577ee8ce54b67080a80d1ec69821bcb6a8839396f9652b6ff72a70"
)
COLLISION_B = bytes.fromhex(
    "d131dd02c5e6eec4693d9a0698aff95c2fcab50712467eab4004583eb8fb7f89"
    "55ad340609f4b30283e4888325f1415a085125e8f7cdc99fd91dbd7280373c5b"
    "d8823e3156348f5bae6dacd436c919c6dd53e23487da03fd02396306d248cda0"
    "e99f33420f577ee8ce54b67080280d1ec69821bcb6a8839396f965ab6ff72a70"
)


def test_the_collision_pair_shares_its_md5_and_not_its_sha256() -> None:
    """The control: the test data really is an md5 collision, also with a pickle after it."""
    tail = malicious_pickle(Path("unused"))
    assert COLLISION_A != COLLISION_B
    assert hashlib.md5(COLLISION_A + tail).digest() == hashlib.md5(COLLISION_B + tail).digest()
    assert hashlib.sha256(COLLISION_A + tail).digest() != hashlib.sha256(COLLISION_B + tail).digest()


def test_an_md5_twin_passes_the_md5_check_and_is_refused_by_the_sha256_before_it_runs(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "payload-ran"
    tail = malicious_pickle(marker)  # the twins carry the same pickle after their colliding blocks
    model = lock_model(tmp_path, COLLISION_A + tail)  # what train wrote and git recorded
    lock = tmp_path / "dvc.lock"
    twin = COLLISION_B + tail  # what a poisoned DVC remote serves instead
    model.write_bytes(twin)
    data, md5 = verified_bytes(model, load_dvc_lock(lock), lock, "model")  # md5 alone lets it through
    assert data == twin
    with pytest.raises(ContractError) as refused:
        load_verified_pickle(model, lock)
    sums = tmp_path / MODEL_SHA256_FILE
    assert str(refused.value) == (
        f"model {model} has sha256 {hashlib.sha256(twin).hexdigest()} but {sums} records "
        f"{hashlib.sha256(COLLISION_A + tail).hexdigest()} (its md5 {md5} does match {lock}: "
        "an md5 collision?): refusing to unpickle it"
    )
    assert not marker.exists()


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (None, "cannot read sha256 record"),
        ("", "has no sha256 for"),
        ("not-a-hash  models/model.joblib\n", ":1: not a `sha256sum` line"),
        (f"{'0' * 64}  models/other.joblib\n", "has no sha256 for"),
    ],
    ids=["missing", "empty", "malformed", "other-file"],
)
def test_a_pickle_without_a_recorded_sha256_is_refused_before_it_runs(
    tmp_path: Path, record: str | None, message: str
) -> None:
    marker = tmp_path / "payload-ran"
    model = lock_model(tmp_path, malicious_pickle(marker))  # its md5 is dvc.lock's
    sums = tmp_path / MODEL_SHA256_FILE
    sums.unlink()
    if record is not None:
        sums.write_text(record)
    with pytest.raises(ContractError, match=re.escape(message)):
        load_verified_pickle(model, tmp_path / "dvc.lock")
    assert not marker.exists()
