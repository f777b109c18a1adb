"""The second, newer BuildKit (Debian unstable's engine, kept in the store, run beside the system
engine) is what it was unpacked from. That it builds image.lock's digests, for every platform, is
tests/integration/test_user_engine.py's `make verify` on it as "the user's engine"."""

from __future__ import annotations

import pytest

from imagetool.images import second_builder

pytestmark = [pytest.mark.docker, pytest.mark.slow]


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
