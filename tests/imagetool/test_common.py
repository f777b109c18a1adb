"""Atomic writes (imagetool.common): a unique temporary file per write, its bytes on disk before the
rename, and the rename on disk before the call returns."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from imagetool import common


def test_concurrent_writers_never_share_a_temporary_file(tmp_path: Path) -> None:
    """With one fixed temporary name, two writers rename each other's file away (FileNotFoundError)
    or publish a mix; with unique names every write lands whole."""
    target = tmp_path / "state.json"
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(200):
                common.write_json_atomic(target, {"writer": n, "i": i, "pad": "x" * 4096})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert json.loads(target.read_text())["i"] == 199
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left behind


def test_the_file_and_its_directory_are_synced_before_the_write_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(str(Path(f"/proc/self/fd/{fd}").readlink()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    target = tmp_path / "out.json"
    common.write_json_atomic(target, {"a": 1})
    [file_synced, directory_synced] = synced
    assert Path(file_synced).parent == tmp_path
    assert file_synced.endswith(".tmp")  # the temporary file, before the rename
    assert directory_synced == str(tmp_path)  # after it


def test_a_failed_rename_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()  # a directory: the rename over it fails
    with pytest.raises(IsADirectoryError):
        common.write_bytes_atomic(target, b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
