"""HTTP to a container registry, with the authentication registries ask for.

A registry that wants credentials answers 401 with a `WWW-Authenticate` challenge (distribution
spec, "token authentication"):
- `Basic realm=...`: the request is sent again with the credentials (the reference registry's
  `htpasswd` auth);
- `Bearer realm=...,service=...,scope=...`: a token is fetched from `realm` with the credentials as
  Basic auth (anonymously without them), and the request is sent again with that token (GHCR,
  Docker Hub, Harbor, GitLab, the reference registry's `token` auth). A later challenge for a wider
  scope (a push after a pull) fetches a new token.

Credentials come from the environment, `REGISTRY_USERNAME` and `REGISTRY_PASSWORD`, else from
docker's configuration as `docker login` leaves it (`$DOCKER_CONFIG/config.json`, default
`~/.docker/config.json`): the `auths` entry for the registry host, or the credential helper that
`credHelpers`/`credsStore` names. Never from the command line; messages name where they came from,
never what they are. They are sent over HTTPS only (plain HTTP to loopback), and not along redirects
(blob downloads are often redirected to a storage host).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeAlias
from urllib.parse import urlencode, urlsplit

ENV_USERNAME = "REGISTRY_USERNAME"
ENV_PASSWORD = "REGISTRY_PASSWORD"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_TIMEOUT = 60.0
_CHALLENGE = re.compile(r"\s*(?P<scheme>[A-Za-z]+)\s*(?P<params>.*)")
_PARAM = re.compile(r'([A-Za-z_]+)="([^"]*)"')


class RegistryError(Exception):
    """The registry, the image tarball or the SBOM is not as it must be; the message names which."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    source: str  # where they were found, for messages (never the secret)

    @property
    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


# --- where credentials come from ---------------------------------------------------------------

CredentialLookup: TypeAlias = Callable[[str], Credentials | None]  # host -> credentials


def find_credentials(host: str, environ: Mapping[str, str] = os.environ) -> Credentials | None:
    """Credentials for `host` (`name[:port]`): the environment first, then docker's configuration."""
    username, password = environ.get(ENV_USERNAME), environ.get(ENV_PASSWORD)
    if username or password:
        if not (username and password):
            unset = ENV_PASSWORD if username else ENV_USERNAME
            raise RegistryError(f"{ENV_USERNAME} and {ENV_PASSWORD} go together, and {unset} is not set")
        return Credentials(username, password, f"{ENV_USERNAME}/{ENV_PASSWORD}")
    config_dir = environ.get("DOCKER_CONFIG")
    config = Path(config_dir) if config_dir else Path(environ.get("HOME", "~")).expanduser() / ".docker"
    return docker_config_credentials(host, config / "config.json")


def _config_host(key: str) -> str:
    """`auths` keys are hosts or URLs (`https://ghcr.io`, `https://index.docker.io/v1/`)."""
    return re.sub(r"^[a-z]+://", "", key).split("/", 1)[0]


def docker_config_credentials(host: str, path: Path) -> Credentials | None:
    """What `docker login host` stored in `path`; None when it holds nothing for `host`."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read docker's configuration ({exc.strerror})") from None
    except ValueError as exc:
        raise RegistryError(f"{path}: docker's configuration is not JSON ({exc})") from None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    for key, entry in (auths if isinstance(auths, dict) else {}).items():
        if _config_host(key) != host or not isinstance(entry, dict):
            continue
        where = f"{path} auths[{key!r}]"
        if entry.get("auth"):
            try:
                username, colon, password = (
                    base64.b64decode(entry["auth"], validate=True).decode().partition(":")
                )
            except (binascii.Error, UnicodeDecodeError, TypeError):
                colon = ""
            if not colon:
                raise RegistryError(f"{where}.auth is not base64 of `username:password`")
            return Credentials(username, password, where)
        if entry.get("username") and entry.get("password"):
            return Credentials(entry["username"], entry["password"], where)
    helpers = doc.get("credHelpers") if isinstance(doc, dict) else None
    helper = (helpers if isinstance(helpers, dict) else {}).get(host) or (
        doc.get("credsStore") if isinstance(doc, dict) else None
    )
    return _helper_credentials(host, str(helper), path) if helper else None


def _helper_credentials(host: str, helper: str, config: Path) -> Credentials | None:
    """Ask docker's credential helper (`docker-credential-<helper> get`, the host on stdin)."""
    program = f"docker-credential-{helper}"
    try:
        done = subprocess.run([program, "get"], input=host, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RegistryError(
            f"{config} names credential helper {program}, which did not run ({exc})"
        ) from None
    if done.returncode != 0:  # "credentials not found in native keychain"
        return None
    try:
        answer = json.loads(done.stdout)
        return Credentials(answer["Username"], answer["Secret"], program)
    except (ValueError, KeyError, TypeError):
        raise RegistryError(f"{program} get: the answer is not {{Username, Secret}} JSON") from None


# --- challenges ----------------------------------------------------------------------------------


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="...",scope="..."` -> ("bearer", {realm, service, scope})."""
    match = _CHALLENGE.match(header)
    if not match:
        return "", {}
    return match["scheme"].lower(), {k.lower(): v for k, v in _PARAM.findall(match["params"])}


def _loopback(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in LOOPBACK


# --- one exchange, and a session that authenticates ---------------------------------------------


def exchange(
    method: str,
    url: str,
    body: bytes | IO[bytes] | None = None,
    headers: Mapping[str, str] | None = None,
    authorization: str | None = None,
) -> Reply:
    """One HTTP exchange, any status; no answer at all is a RegistryError naming the URL."""
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    if authorization:
        req.add_unredirected_header("Authorization", authorization)  # not sent along redirects
    try:
        with urllib.request.urlopen(req, timeout=_TIMEOUT) as reply:
            status, got, data = reply.status, dict(reply.headers.items()), reply.read()
    except urllib.error.HTTPError as exc:
        status, got, data = exc.code, dict(exc.headers.items()), exc.read()
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{method} {url}: no answer from the registry ({exc})") from None
    return Reply(status, {k.lower(): v for k, v in got.items()}, data)


def _rewind(body: bytes | IO[bytes] | None) -> None:
    if body is not None and not isinstance(body, bytes):
        body.seek(0)


class Session:
    """Requests to one registry host; answers its 401 challenges with the credentials, if any."""

    def __init__(self, host: str, credentials: Credentials | CredentialLookup | None = None):
        self.host = host
        self._credentials = credentials
        self._authorization: str | None = None  # sent with every request once a challenge was met

    @property
    def credentials(self) -> Credentials | None:
        """Looked up at the first challenge: a registry that asks for none needs none (and a broken
        docker config or credential helper does not stop a push to it)."""
        if callable(self._credentials):
            self._credentials = self._credentials(self.host)
        return self._credentials

    def request(
        self,
        method: str,
        url: str,
        body: bytes | IO[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 202),
    ) -> Reply:
        """The exchange, authenticated if challenged; a status outside `ok` is a RegistryError."""
        reply = exchange(method, url, body, headers, self._authorization)
        if reply.status == 401:
            self._authorization = self._answer(reply.headers.get("www-authenticate", ""))
            _rewind(body)
            reply = exchange(method, url, body, headers, self._authorization)
            if reply.status == 401:
                raise self._refused()
        if reply.status not in ok:
            detail = reply.body[:300].decode("utf-8", "replace").strip()
            raise RegistryError(f"{method} {url}: HTTP {reply.status} {detail}")
        return reply

    def _needs_credentials(self) -> RegistryError:
        return RegistryError(
            f"{self.host}: HTTP 401 Unauthorized, the registry wants credentials: set {ENV_USERNAME} and "
            f"{ENV_PASSWORD}, or `docker login {self.host}`"
        )

    def _refused(self) -> RegistryError:
        if self.credentials is None:
            return self._needs_credentials()
        return RegistryError(
            f"{self.host}: HTTP 401 Unauthorized with the credentials from {self.credentials.source} "
            f"(user {self.credentials.username!r}): wrong, or without push rights to this repository"
        )

    def _answer(self, challenge: str) -> str:
        """The Authorization header that answers the challenge."""
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self.credentials is None:
                raise self._needs_credentials()
            return self.credentials.basic
        if scheme == "bearer":
            return "Bearer " + self._token(params)
        raise RegistryError(
            f"{self.host}: HTTP 401 with a challenge this tool does not answer: {challenge!r}"
        )

    def _token(self, params: dict[str, str]) -> str:
        """A token from the challenge's realm for its service and scope (distribution token spec)."""
        realm = params.get("realm", "")
        if not (realm.startswith("https://") or _loopback(realm)):
            raise RegistryError(
                f"{self.host}: token realm {realm!r} is not an HTTPS URL; credentials stay here"
            )
        query = urlencode([(k, params[k]) for k in ("service", "scope") if k in params])
        url = f"{realm}{'&' if '?' in realm else '?'}{query}" if query else realm
        reply = exchange("GET", url, authorization=self.credentials.basic if self.credentials else None)
        if reply.status in (401, 403):
            if self.credentials is None:
                raise self._needs_credentials()
            raise RegistryError(
                f"{self.host}: token server {realm} refused the credentials from {self.credentials.source} "
                f"(user {self.credentials.username!r}): HTTP {reply.status}"
            )
        try:
            doc = json.loads(reply.body) if reply.status == 200 else {}
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{self.host}: token server {realm} gave no token (HTTP {reply.status})")
        return token
