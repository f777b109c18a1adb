"""`imagetool.inputs.aptsources`: apt source lists parsed and chosen per suite."""

from __future__ import annotations

import pytest

from harness import REPO_ROOT
from imagetool.inputs import aptsources

ROOT = REPO_ROOT


DEB822 = """\
Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://mirror.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_deb822_sources_are_split_per_suite_and_skip_deb_src() -> None:
    got = aptsources.parse_deb822(DEB822)
    assert [(s.uri, s.suite) for s in got] == [
        ("http://mirror.example/debian", "bookworm"),
        ("http://mirror.example/debian", "bookworm-updates"),
        ("http://mirror.example/debian-security", "bookworm-security"),
    ]
    assert got[0].options == ("signed-by=/usr/share/keyrings/debian-archive-keyring.gpg",)


def test_one_line_sources_keep_options_and_ignore_comments() -> None:
    text = (
        "# deb http://old bookworm main\n"
        "deb [arch=amd64 trusted=yes] http://m.example/debian/ bookworm main\n"
    )
    (src,) = aptsources.parse_one_line(text)
    assert src == aptsources.Source(
        "http://m.example/debian", "bookworm", ("main",), ("arch=amd64", "trusted=yes")
    )
    assert src.line() == "deb [arch=amd64 trusted=yes] http://m.example/debian bookworm main"


def test_sources_for_suite_picks_updates_and_security_with_wanted_components() -> None:
    picked = aptsources.sources_for_suite(aptsources.parse_deb822(DEB822), "bookworm", ["main"])
    assert [s.suite for s in picked] == ["bookworm", "bookworm-updates", "bookworm-security"]
    assert all(s.components == ("main",) for s in picked)


def test_sources_for_suite_without_the_suite_is_an_error() -> None:
    with pytest.raises(LookupError, match="trixie"):
        aptsources.sources_for_suite(aptsources.parse_deb822(DEB822), "trixie", ["main"])
