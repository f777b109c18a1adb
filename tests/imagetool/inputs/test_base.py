"""`imagetool.inputs.base`: the dpkg status, package changes and the base lock and definition."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import REPO_ROOT
from imagetool.common import ToolError
from imagetool.inputs import base

ROOT = REPO_ROOT


STATUS = """\
Package: bash
Status: install ok installed
Version: 5.2.15-2+b7

Package: gone
Status: deinstall ok config-files
Version: 1.0

Package: python3
Status: install ok installed
Version: 3.11.2-1+b1
Description: multi
 line
"""


def test_dpkg_status_lists_only_installed_packages() -> None:
    assert base.parse_dpkg_status(STATUS) == {"bash": "5.2.15-2+b7", "python3": "3.11.2-1+b1"}


def test_package_changes_name_every_moved_package() -> None:
    locked = {"bash": "1", "libssl3": "3.0.1", "old": "2"}
    now = {"bash": "1", "libssl3": "3.0.2", "new": "7"}
    assert base.package_changes(locked, now) == [
        "  ~ libssl3 3.0.1 -> 3.0.2",
        "  + new 7 (new)",
        "  - old 2 (gone)",
    ]


def test_committed_base_lock_is_valid_and_matches_its_definition() -> None:
    lock = base.BaseLock.of(json.loads((ROOT / "image/base.lock.json").read_text()))
    assert lock.definition_sha256 == base.definition_sha256(base.load_definition())
    assert "python3" in lock.packages
    assert not {"gcc", "cpp", "perl", "apt", "python3-pip", "locales"} & set(lock.packages)
    assert lock == base.load_lock()


def test_edited_base_lock_is_rejected_naming_the_file() -> None:
    lock = json.loads((ROOT / "image/base.lock.json").read_text())
    lock["tarball"]["sha256"] = "not-a-hash"
    with pytest.raises(ToolError, match=r"base\.lock\.json: tarball\.sha256"):
        base.BaseLock.of(lock)


@pytest.mark.parametrize("epoch", [0, -1, True, "1700000000"])
def test_a_base_lock_epoch_that_is_not_a_positive_integer_is_rejected(epoch: object) -> None:
    lock = json.loads((ROOT / "image/base.lock.json").read_text())
    lock["source_date_epoch"] = epoch
    with pytest.raises(ToolError, match=r"base\.lock\.json: source_date_epoch must be a positive integer"):
        base.BaseLock.of(lock)


def test_base_definition_hash_ignores_comments_and_key_order(tmp_path: Path) -> None:
    text = (ROOT / "image/base.toml").read_text()
    a = tmp_path / "a.toml"
    a.write_text("# another comment\n" + text)
    assert base.definition_sha256(base.load_definition(a)) == base.definition_sha256(base.load_definition())


def test_base_definition_with_unknown_key_is_rejected(tmp_path: Path) -> None:
    p = tmp_path / "b.toml"
    p.write_text((ROOT / "image/base.toml").read_text() + 'surprise = "x"\n')
    with pytest.raises(ToolError, match="unknown keys"):
        base.load_definition(p)
