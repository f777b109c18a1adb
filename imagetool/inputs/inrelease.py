"""An archive's ``InRelease``, believed only through its OpenPGP signature.

The base's SOURCE_DATE_EPOCH is the archive's Release ``Date``. It is read from what ``gpgv``
prints as the signed text, never from the raw file: text outside the signed part, a changed
byte, an unsigned file or one signed by a key the source does not trust is refused, naming the
URL and why. The keyring is the one the source's ``signed-by`` names, else Debian's archive
keyring (package debian-archive-keyring), as apt would use it.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import tempfile
import time
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

from imagetool.common import ToolError
from imagetool.inputs.apt import KEYRING
from imagetool.inputs.aptsources import Source

DEBIAN_KEYRING = Path(KEYRING)
# OpenPGP hash algorithm ids (RFC 4880 9.4) apt no longer accepts: MD5, SHA-1, RIPEMD-160.
WEAK_HASHES = {"1", "2", "3"}


class UntrustedReleaseError(ToolError):
    """An InRelease whose signature does not make it trustworthy."""


def keyrings_and_fingerprints(src: Source) -> tuple[list[Path], set[str]]:
    """The keyring files to verify ``src`` with, and the fingerprints it is limited to (if any)."""
    paths, fingerprints = [], set()
    for value in src.signed_by():
        if value.startswith("/"):
            paths.append(Path(value))
        else:
            fingerprints.add(value.upper().removesuffix("!"))
    return paths or [DEBIAN_KEYRING], fingerprints


def _binary_keyring(path: Path, into: Path) -> Path:
    """``path`` as gpgv reads it: an ASCII-armoured (``.asc``) keyring is de-armoured first."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ToolError(f"keyring {path}: cannot read it ({e.strerror})") from None
    if not data.lstrip().startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"):
        return path
    body = re.split(r"\r?\n\r?\n", data.decode("ascii", "replace"), maxsplit=1)[-1].split("-----END")[0]
    lines = [ln.strip() for ln in body.splitlines() if ln.strip() and not ln.startswith("=")]
    into.write_bytes(base64.b64decode("".join(lines)))
    return into


def signature_verdict(status: str, fingerprints: set[str] | frozenset[str] = frozenset()) -> str | None:
    """None if gpgv's status lines show a good, strong signature (by one of ``fingerprints``, when
    given) and no bad one; else why not."""
    good = weak = expired = unknown = 0
    bad = signed = False
    current_good = False
    for line in status.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0] != "[GNUPG:]":
            continue
        word = parts[1]
        if word == "NEWSIG":
            signed, current_good = True, False
        elif word == "GOODSIG":
            current_good = True
        elif word == "VALIDSIG" and current_good and len(parts) >= 12:
            signer = {parts[2].upper(), parts[11].upper()}
            if fingerprints and not signer & fingerprints:
                unknown += 1
            elif parts[9] in WEAK_HASHES:
                weak += 1
            else:
                good += 1
        elif word == "BADSIG":
            bad = True
        elif word in ("EXPKEYSIG", "REVKEYSIG", "EXPSIG"):
            expired += 1
        elif word in ("ERRSIG", "NO_PUBKEY"):
            unknown += 1
    if bad:
        return "a signature does not match the signed text (the file was altered)"
    if good:
        return None
    if not signed:
        return "it is not signed"
    if weak:
        return "it is signed only with a weak hash (SHA-1 or older)"
    if expired:
        return "it is signed only by expired or revoked keys"
    return "it is signed by none of the trusted keys"


def verified_text(data: bytes, src: Source, url: str) -> str:
    """The signed text of the InRelease ``data`` from ``url``, once gpgv has verified it."""
    keyrings, fingerprints = keyrings_and_fingerprints(src)
    with tempfile.TemporaryDirectory(prefix="lockstep-gpgv-") as tmp:
        folder = Path(tmp)
        signed, out = folder / "InRelease", folder / "signed-text"
        signed.write_bytes(data)
        cmd = ["gpgv", "--status-fd", "1", "--output", str(out)]
        for i, ring in enumerate(keyrings):
            cmd += ["--keyring", str(_binary_keyring(ring, folder / f"keyring{i}.gpg"))]
        cmd.append(str(signed))
        try:
            # Its own GNUPGHOME: no user keyring (trustedkeys.kbx) can widen the trust.
            p = subprocess.run(
                cmd, capture_output=True, text=True, check=False, env={**os.environ, "GNUPGHOME": tmp}
            )
        except FileNotFoundError:
            raise ToolError("gpgv: not installed (Debian package gpgv)") from None
        reason = signature_verdict(p.stdout, fingerprints)
        if reason is None and p.returncode != 0:
            reason = f"gpgv failed ({p.returncode}): {p.stderr.strip()[-300:]}"
        if reason is not None:
            rings = ", ".join(str(r) for r in keyrings)
            raise UntrustedReleaseError(f"{url}: refused: {reason} (keyring {rings})")
        return out.read_text(encoding="utf-8", errors="replace")


def _field(text: str, name: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    return None


def _when(value: str, name: str, url: str) -> int:
    try:
        dt: datetime = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise UntrustedReleaseError(f"{url}: refused: {name} {value!r} is not a date") from None
    return int(dt.timestamp())


def release_date(text: str, suite: str, url: str, now: float | None = None) -> int:
    """``Date`` of verified Release text, as a Unix timestamp.

    Refused like apt would: a Release for another suite (a replayed one), or one past its
    ``Valid-Until`` at ``now``.
    """
    names = {_field(text, "Suite"), _field(text, "Codename")}
    if suite not in names:
        found = ", ".join(sorted(n for n in names if n)) or "none"
        raise UntrustedReleaseError(f"{url}: refused: it is the Release of {found}, not of {suite}")
    date = _field(text, "Date")
    if date is None:
        raise UntrustedReleaseError(f"{url}: refused: no Date field in the signed text")
    valid_until = _field(text, "Valid-Until")
    now = time.time() if now is None else now
    if valid_until is not None and _when(valid_until, "Valid-Until", url) < now:
        raise UntrustedReleaseError(f"{url}: refused: expired (Valid-Until {valid_until})")
    return _when(date, "Date", url)
