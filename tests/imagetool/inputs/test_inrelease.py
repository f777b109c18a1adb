"""The base comes only from archives apt verifies: sources that weaken the check are refused, and
the archive date is read from a signature-checked InRelease (a real one, and tampered copies)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import REPO_ROOT as ROOT
from harness import copy_repo
from imagetool.common import InputError, ToolError
from imagetool.inputs import base, base_build, inrelease
from imagetool.inputs.aptsources import Source

FIXTURE = Path(__file__).parent / "fixtures/bookworm-security.InRelease"
FIXTURE_DATE = 1795480473  # Tue, 24 Nov 2026 00:34:33 UTC: the fixture's signed Date
NOW = FIXTURE_DATE + 3600  # inside the fixture's Valid-Until (a week)
SUITE = "bookworm-security"
URL = "http://mirror.example/debian-security/dists/bookworm-security/InRelease"
DEBIAN = Source("http://mirror.example/debian-security", SUITE, ("main",))


def _definition(sources: object) -> dict[str, object]:
    return {**base.load_definition(), "sources": sources}


# --- insecure source options ---------------------------------------------------------------------

WEAKENING_ONE_LINE = [
    "trusted=yes",
    "trusted=true",
    "Trusted=YES",
    "trusted+=yes",
    "trusted=maybe",
    "allow-insecure=yes",
    "allow-weak=yes",
    "allow-downgrade-to-insecure=yes",
    "check-valid-until=no",
    "check-valid-until=false",
    "check-date=no",
]


@pytest.mark.parametrize("option", WEAKENING_ONE_LINE)
def test_given_source_with_a_weakening_option_is_refused(option: str) -> None:
    line = f"deb [arch=amd64 {option}] http://deb.example/debian bookworm main"
    with pytest.raises(InputError) as err:
        base_build.resolve_sources(_definition(["deb http://deb.example/debian bookworm-updates main", line]))
    assert str(err.value).startswith("image/base.toml: sources[1]: ")
    assert f"option {option}: " in str(err.value)
    assert "\n" not in str(err.value)  # one line per refused option


@pytest.mark.parametrize(
    "line",
    [
        "deb http://deb.example/debian bookworm main",  # plain http: apt checks the signed InRelease
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] https://d.example/d bookworm main",
        "deb [arch=amd64 trusted=no check-valid-until=yes allow-weak=no] http://d.example/d bookworm main",
    ],
)
def test_given_source_that_keeps_verification_is_accepted(line: str) -> None:
    (src,) = base_build.resolve_sources(_definition([line]))
    assert src.line() == line  # passed on to mmdebstrap as given
    assert src.origin == "image/base.toml: sources[0]"


@pytest.mark.parametrize(
    ("field", "option"),
    [
        ("Trusted: yes", "trusted=yes"),
        ("Allow-Insecure: yes", "allow-insecure=yes"),
        ("Allow-Weak: yes", "allow-weak=yes"),
        ("Allow-Downgrade-To-Insecure: yes", "allow-downgrade-to-insecure=yes"),
        ("Check-Valid-Until: no", "check-valid-until=no"),
    ],
)
def test_host_deb822_source_with_a_weakening_field_is_refused(
    tmp_path: Path, field: str, option: str
) -> None:
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "debian.sources").write_text(
        "Types: deb\nURIs: http://deb.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "# security\n"
        "Types: deb\nURIs: http://deb.example/debian-security\nSuites: bookworm-security\n"
        f"Components: main\n{field}\n"
    )
    with pytest.raises(InputError) as err:
        base_build.resolve_sources(_definition("host"), etc_apt=tmp_path)
    assert str(err.value).startswith(f"{parts / 'debian.sources'}:7: ")
    assert f"option {option}: " in str(err.value)


def test_host_one_line_source_with_trusted_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# the mirror\ndeb [trusted=yes] http://deb.example/debian bookworm main\n"
        "deb http://deb.example/debian-security bookworm-security main\n"
    )
    with pytest.raises(InputError, match=rf"^{tmp_path / 'sources.list'}:2: .*option trusted=yes: turns off"):
        base_build.resolve_sources(_definition("host"), etc_apt=tmp_path)


def test_host_sources_the_base_does_not_use_are_not_judged(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "deb http://deb.example/debian bookworm main\ndeb [trusted=yes] file:/srv/local-repo ./\n"
    )
    sources = base_build.resolve_sources(_definition("host"), etc_apt=tmp_path)
    assert [s.suite for s in sources] == ["bookworm"]


def test_inline_signed_by_key_is_refused_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d/x.sources").write_text(
        "Types: deb\nURIs: http://deb.example/debian\nSuites: bookworm\nComponents: main\n"
        "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBF\n"
        " -----END PGP PUBLIC KEY BLOCK-----\n"
    )
    with pytest.raises(InputError, match=r"inline key block.*keyring file"):
        base_build.resolve_sources(_definition("host"), etc_apt=tmp_path)


@pytest.mark.parametrize(
    "line",
    [
        "deb-src http://deb.example/debian bookworm main",
        "http://deb.example/debian bookworm main",
        "deb http://deb.example/debian",
        "deb http://a.example/d bookworm main\ndeb http://b.example/d bookworm main",
    ],
)
def test_given_source_that_is_not_one_deb_line_is_refused(tmp_path: Path, line: str) -> None:
    toml = tmp_path / "base.toml"
    toml.write_text(
        (ROOT / "image/base.toml").read_text().replace('sources = "host"', f"sources = [{json.dumps(line)}]")
    )
    with pytest.raises(InputError) as err:
        base.load_definition(toml)
    assert str(err.value) == (
        f"{toml}: sources[0]: {line!r} is not one `deb [options] URI SUITE COMPONENT...` line"
    )


@pytest.mark.parametrize("command", ["lock", "check"])
def test_base_cli_refuses_a_trusted_source_with_exit_2_and_writes_nothing(
    tmp_path: Path, command: str
) -> None:
    """The real CLI, in a copy of the repository: refused before any network or mmdebstrap run."""
    repo = copy_repo(tmp_path / "repo")
    toml = repo / "image/base.toml"
    toml.write_text(
        toml.read_text().replace(
            'sources = "host"', 'sources = ["deb [trusted=yes] http://deb.example/debian bookworm main"]'
        )
    )
    lock_before = (repo / "image/base.lock.json").read_bytes()
    proc = subprocess.run(
        [sys.executable, "-m", "imagetool", "base", command],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: image/base.toml: sources[0]: 'deb [trusted=yes] http://deb.example/debian bookworm main': "
        "option trusted=yes: turns off apt's signature check; refused "
        "(remove it: apt checks the signed InRelease, over plain http:// too)"
    ]
    assert (repo / "image/base.lock.json").read_bytes() == lock_before
    assert not (repo / "build/base").exists()


# --- signature-checked InRelease -----------------------------------------------------------------


def test_real_inrelease_verifies_and_gives_its_signed_date() -> None:
    text = inrelease.verified_text(FIXTURE.read_bytes(), DEBIAN, URL)
    assert inrelease.release_date(text, SUITE, URL, now=NOW) == FIXTURE_DATE


def _flip_in_date_line(data: bytes) -> bytes:
    at = data.index(b"\nDate: ") + len(b"\nDate: Tue, 2")
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]  # 24 Nov -> 25 Nov


def _plain_release() -> bytes:
    text = inrelease.verified_text(FIXTURE.read_bytes(), DEBIAN, URL)
    return text.encode()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_flip_in_date_line, "a signature does not match the signed text (the file was altered)"),
        (lambda data: _plain_release(), "it is not signed"),
    ],
    ids=["one-byte-in-date", "unsigned"],
)
def test_tampered_inrelease_is_refused_naming_the_url_and_why(
    make: Callable[[bytes], bytes], reason: str
) -> None:
    with pytest.raises(inrelease.UntrustedReleaseError) as err:
        inrelease.verified_text(make(FIXTURE.read_bytes()), DEBIAN, URL)
    assert str(err.value) == f"{URL}: refused: {reason} (keyring {inrelease.DEBIAN_KEYRING})"


def test_the_date_comes_from_the_signed_text_not_from_lines_around_it() -> None:
    forged = b"Date: Thu, 01 Jan 2099 00:00:00 UTC\n\n" + FIXTURE.read_bytes() + b"Date: Thu, 01 Jan 2099\n"
    text = inrelease.verified_text(forged, DEBIAN, URL)
    assert "2099" not in text
    assert inrelease.release_date(text, SUITE, URL, now=NOW) == FIXTURE_DATE


def test_release_of_another_suite_is_refused() -> None:
    text = inrelease.verified_text(FIXTURE.read_bytes(), DEBIAN, URL)
    with pytest.raises(
        inrelease.UntrustedReleaseError,
        match=r"Release of bookworm-security, oldstable-security, not of bookworm$",
    ):
        inrelease.release_date(text, "bookworm", URL, now=NOW)


def test_expired_release_is_refused() -> None:
    text = inrelease.verified_text(FIXTURE.read_bytes(), DEBIAN, URL)
    with pytest.raises(inrelease.UntrustedReleaseError, match=r"expired \(Valid-Until Tue, 01 Dec 2026"):
        inrelease.release_date(text, SUITE, URL, now=FIXTURE_DATE + 8 * 86400)


# Debian Security Archive Automatic Signing Key (12/bookworm), which signed the fixture.
BOOKWORM_SECURITY_KEY = "05AB90340C0C5E797F44A8C8254CF3B5AEC0A8F0"


@pytest.mark.parametrize(
    ("fingerprints", "refused"),
    [(BOOKWORM_SECURITY_KEY, False), (BOOKWORM_SECURITY_KEY.lower() + "!", False), ("0" * 40, True)],
)
def test_signed_by_fingerprints_limit_the_keys_accepted(fingerprints: str, refused: bool) -> None:
    src = Source(DEBIAN.uri, SUITE, ("main",), (f"signed-by={fingerprints}",))
    if refused:
        with pytest.raises(inrelease.UntrustedReleaseError, match="signed by none of the trusted keys"):
            inrelease.verified_text(FIXTURE.read_bytes(), src, URL)
    else:
        inrelease.verified_text(FIXTURE.read_bytes(), src, URL)


@pytest.fixture(scope="module")
def foreign_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A GnuPG home with a fresh signing key that no Debian keyring holds."""
    if shutil.which("gpg") is None:
        pytest.skip("gpg (Debian package gpg) is not installed")
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    try:
        subprocess.run(
            ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "Not Debian <x@example.invalid>",
             "ed25519", "sign", "never"],
            env={**os.environ, "GNUPGHOME": str(home)}, capture_output=True, check=True,
        )  # fmt: skip
        yield home
    finally:  # gpg started an agent for this home: leave no process behind
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True)


def _gpg(home: Path, *args: str, data: bytes = b"") -> bytes:
    env = {**os.environ, "GNUPGHOME": str(home)}
    return subprocess.run(
        ["gpg", "--batch", *args], input=data, env=env, capture_output=True, check=True
    ).stdout


def test_inrelease_signed_by_a_foreign_key_is_refused(foreign_key: Path) -> None:
    forged = _gpg(foreign_key, "--clearsign", "--digest-algo", "SHA256", data=_plain_release())
    with pytest.raises(
        inrelease.UntrustedReleaseError,
        match=f"^{re.escape(URL)}: refused: it is signed by none of the trusted keys",
    ):
        inrelease.verified_text(forged, DEBIAN, URL)


@pytest.mark.parametrize("armour", [False, True], ids=["binary-keyring", "asc-keyring"])
def test_signed_by_keyring_is_the_one_trusted(foreign_key: Path, tmp_path: Path, armour: bool) -> None:
    signed = _gpg(foreign_key, "--clearsign", "--digest-algo", "SHA256", data=_plain_release())
    ring = tmp_path / ("own.asc" if armour else "own.gpg")
    ring.write_bytes(_gpg(foreign_key, "--export", *(["--armor"] if armour else [])))
    own = Source(DEBIAN.uri, SUITE, ("main",), (f"signed-by={ring}",))
    text = inrelease.verified_text(signed, own, URL)
    assert inrelease.release_date(text, SUITE, URL, now=NOW) == FIXTURE_DATE
    # ... and Debian's own signature is no longer enough for that source.
    with pytest.raises(inrelease.UntrustedReleaseError, match=f"keyring {ring}"):
        inrelease.verified_text(FIXTURE.read_bytes(), own, URL)


def test_sha1_only_signature_is_refused(foreign_key: Path, tmp_path: Path) -> None:
    signed = _gpg(foreign_key, "--clearsign", "--digest-algo", "SHA1", data=_plain_release())
    ring = tmp_path / "own.gpg"
    ring.write_bytes(_gpg(foreign_key, "--export"))
    own = Source(DEBIAN.uri, SUITE, ("main",), (f"signed-by={ring}",))
    with pytest.raises(inrelease.UntrustedReleaseError, match="weak hash"):
        inrelease.verified_text(signed, own, URL)


def _archive(root: Path, data: bytes) -> Source:
    dists = root / "dists" / SUITE
    dists.mkdir(parents=True)
    (dists / "InRelease").write_bytes(data)
    return Source(f"file://{root}", SUITE, ("main",))


def test_release_epoch_reads_the_verified_date_of_each_source(tmp_path: Path) -> None:
    assert base_build.release_epoch([_archive(tmp_path, FIXTURE.read_bytes())], now=NOW) == FIXTURE_DATE


def test_release_epoch_refuses_a_tampered_archive(tmp_path: Path) -> None:
    good = _archive(tmp_path / "good", FIXTURE.read_bytes())
    bad = _archive(tmp_path / "bad", _flip_in_date_line(FIXTURE.read_bytes()))
    with pytest.raises(
        ToolError,
        match=rf"^file://{re.escape(str(tmp_path))}/bad/dists/{SUITE}/InRelease: refused: .*altered",
    ):
        base_build.release_epoch([good, bad], now=NOW)
