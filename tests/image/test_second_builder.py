"""The digest does not depend on the builder: a second, newer BuildKit (Debian unstable's engine,
kept in the store, run beside the system engine) builds image.lock's digest too."""

from __future__ import annotations

import json

import pytest

from imagetool import image, second_builder
from tests.helpers import REPO_ROOT as ROOT

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_second_buildkit_gives_the_locked_digest(
    built_inputs: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    locked = json.loads((ROOT / "image.lock").read_text())["digest"]
    inputs = image.current_inputs(ROOT)
    system = image.builder_identity()
    with second_builder.running() as env:
        other = image.builder_identity(env)
        result = image.buildx(ROOT, inputs, tmp_path_factory.mktemp("b2") / "b2.oci.tar", True, env=env)
    assert other["engine"].split(".")[0] != system["engine"].split(".")[0], (system, other)
    assert other["buildx"] != system["buildx"]
    assert result.digest == locked, f"builder {other} gives another digest than image.lock ({system})"


def test_unpacked_daemons_are_checked_against_the_debs_on_every_use(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No stamp is trusted: a daemon changed after unpacking is named and unpacked again from the
    checked .debs, before anything runs it."""
    root = second_builder.unpack()
    daemon = root / "usr/bin/containerd"
    original = daemon.read_bytes()
    with daemon.open("ab") as fh:
        fh.write(b"\0tampered")
    capsys.readouterr()
    assert second_builder.unpack() == root
    assert "usr/bin/containerd: sha256 " in capsys.readouterr().err
    assert daemon.read_bytes() == original
