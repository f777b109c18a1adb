"""apt runs with its own sandbox (APT::Sandbox::User left at `_apt`): run as root it downloads as
`_apt`, and a directory that user cannot reach is refused instead of apt quietly falling back to
downloading as root. Real apt against the host's Debian mirror (the store's network step)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagetool.common import BUILD, ToolError
from imagetool.inputs import apt, base, base_build

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(apt.sandbox_uid() is None, reason="apt drops privileges only when run as root"),
]


@pytest.fixture
def folder() -> Iterator[Path]:
    """A directory `_apt` can reach, as the store's apt state is (apt.state_folder); not tmp_path,
    which pytest makes 0700."""
    path = apt.state_folder("test-apt-sandbox")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _state(folder: Path) -> apt.AptState:
    return apt.AptState(folder, base_build.resolve_sources(base.load_definition()))


def test_the_sandbox_user_is_apt_s_default() -> None:
    options = apt.AptState(BUILD / "unused", []).options()
    assert not any(option.startswith("APT::Sandbox::User") for option in options)


def test_a_download_runs_sandboxed_and_lands_root_owned_in_its_destination(folder: Path) -> None:
    state = _state(folder / "apt")
    [(name, version)] = [(p, v) for p, v in state.resolve(["hello"]) if p == "hello"]
    dest = folder / "debs"
    state.download([f"{name}={version}"], dest)  # refused if apt fell back to root
    [deb] = dest.glob("*.deb")
    assert apt.deb_file_version(deb.name) == (name, version)
    assert deb.stat().st_uid == 0
    assert (folder / "apt/lists/partial").stat().st_uid == apt.sandbox_uid()
    assert not (folder / "apt/download").exists()


def test_a_state_directory_apt_s_user_cannot_reach_is_refused(folder: Path) -> None:
    closed = folder / "closed"
    closed.mkdir(mode=0o700)
    state = _state(closed / "apt")
    with pytest.raises(ToolError) as refused:
        state.update()
    message = str(refused.value)
    assert "unsandboxed" in message
    assert f"make {closed / 'apt'} and its parents reachable by `_apt`" in message
