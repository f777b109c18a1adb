"""imagetool.images.image_lock: one reader of image.lock for every verb; each accessor checks what
it gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import REPO_ROOT
from imagetool.common import InputError, ToolError
from imagetool.images.image_lock import ImageLock
from imagetool.platforms import AMD64, ARM64

DIGEST = "sha256:" + "a" * 64


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "image.lock"
    path.write_text(json.dumps(document))
    return path


def test_the_committed_lock_pins_its_index_and_records_both_platforms() -> None:
    lock = ImageLock.read(REPO_ROOT / "image.lock")
    assert lock.pinned == lock.index()["digest"]
    assert lock.digest == lock.record(AMD64)["digest"]
    assert lock.record(ARM64)["inputs"]["platform"] == "linux/arm64"
    assert lock.index_follows()


def test_a_lock_with_only_a_digest_pins_that_digest(tmp_path: Path) -> None:
    lock = ImageLock.read(write(tmp_path, {"digest": DIGEST}))
    assert lock.pinned == lock.digest == DIGEST
    assert lock.stack is None
    with pytest.raises(InputError, match=r"no index over the platforms .*`make lock-image` records one"):
        lock.index()
    with pytest.raises(ToolError, match=r"inputs must record"):
        lock.record(AMD64)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([DIGEST], r"image.lock: not a JSON object"),
        ({"digest": 5}, r"image.lock: digest 5 is not sha256:<64 hex>"),
        ({"comment": "x"}, r"image.lock: cannot read the image digest"),
    ],
)
def test_a_malformed_lock_is_refused_naming_the_file(tmp_path: Path, document: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        _ = ImageLock.read(write(tmp_path, document)).digest


def test_a_missing_lock_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"image.lock: missing \(image lock\); `make lock-image` writes it"):
        ImageLock.read(tmp_path / "image.lock")


def test_an_index_with_a_bad_digest_is_refused(tmp_path: Path) -> None:
    index = {"digest": "sha256:x", "size": 1, "manifests": {"linux/amd64": {"digest": DIGEST, "size": 1}}}
    with pytest.raises(InputError, match=r"index digests must be sha256:<64 hex>"):
        ImageLock.read(write(tmp_path, {"digest": DIGEST, "index": index})).index()
