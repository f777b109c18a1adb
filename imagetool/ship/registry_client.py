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
never what they are (not even the username).

Where the `Authorization` goes: only to the registry's own origin (scheme, host and port, compared
exactly: `localhost` is not `127.0.0.1`) and, for the token itself, to the challenge's realm. Not to
an upload `Location` on another origin (a storage host), not along redirects, and never over plain
HTTP except to loopback. Every answer is read with a size limit, and a session has one overall
deadline, so a registry that drips or floods cannot hold a push forever.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, TypeAlias
from urllib.parse import urlencode, urlsplit

from imagetool.common import InputError

ENV_USERNAME = "REGISTRY_USERNAME"
ENV_PASSWORD = "REGISTRY_PASSWORD"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_TIMEOUT = 60.0  # per socket operation, within the session's deadline
DEADLINE = 1800.0  # seconds for one whole session (a push of every layer)
MAX_BODY = 4 * 1024 * 1024  # manifests, indexes, tokens: the distribution spec's 4 MiB manifest limit
_CHUNK = 64 * 1024
_CHALLENGE = re.compile(r"\s*(?P<scheme>[A-Za-z]+)\s*(?P<params>.*)")
_PARAM = re.compile(r'([A-Za-z_]+)="([^"]*)"')


class RegistryError(InputError):
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


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, the port made explicit: what `Authorization` is bound to."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "https": 443}.get(parts.scheme, 0)
    return parts.scheme, (parts.hostname or "").lower(), port or default


def base_of(host: str) -> str:
    """`http://host` for a loopback registry, `https://host` for any other (`host` is `name[:port]`)."""
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return f"{'http' if hostname.strip('[]') in LOOPBACK else 'https'}://{host}"


def may_carry_credentials(url: str) -> bool:
    """HTTPS, or plain HTTP to loopback only."""
    return urlsplit(url).scheme == "https" or _loopback(url)


def parse_json(data: bytes, what: str) -> Any:
    """The registry's JSON, or one line naming what was not JSON."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{what}: the registry's answer is not JSON ({exc})") from None


class Deadline:
    """One overall time limit for a session; each socket operation gets at most what is left."""

    def __init__(self, seconds: float = DEADLINE):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self, what: str) -> float:
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise RegistryError(f"{what}: the overall deadline of {self.seconds:g} s passed")
        return min(_TIMEOUT, remaining)


# --- one exchange, and a session that authenticates ---------------------------------------------


def exchange(
    method: str,
    url: str,
    body: bytes | IO[bytes] | None = None,
    headers: Mapping[str, str] | None = None,
    authorization: str | None = None,
    limit: int = MAX_BODY,
    deadline: Deadline | None = None,
) -> Reply:
    """One HTTP exchange, any status; no answer at all, an answer over `limit` bytes or one past the
    deadline is a RegistryError naming the URL."""
    deadline = deadline or Deadline()
    what = f"{method} {url}"
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    if authorization:
        if not may_carry_credentials(url):  # the callers check first; this is the last guard
            raise RegistryError(f"{what}: credentials go over HTTPS only (plain HTTP to loopback)")
        req.add_unredirected_header("Authorization", authorization)  # not sent along redirects
    try:
        try:
            reply = urllib.request.urlopen(req, timeout=deadline.left(what))
        except urllib.error.HTTPError as exc:
            reply = exc
        with reply:
            status, got = reply.status, {k.lower(): v for k, v in reply.headers.items()}
            data = _read(reply, limit, deadline, what)
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{what}: no answer from the registry ({exc})") from None
    return Reply(status or 0, got, data)


class _Body(Protocol):
    def read1(self, n: int = ..., /) -> bytes: ...


def _read(reply: _Body, limit: int, deadline: Deadline, what: str) -> bytes:
    """The body in chunks: at most `limit` bytes, and not past the deadline."""
    chunks: list[bytes] = []
    size = 0
    while chunk := reply.read1(_CHUNK):  # what has arrived: the deadline is checked as bytes come
        size += len(chunk)
        if size > limit:
            raise RegistryError(f"{what}: the answer is larger than {limit} bytes")
        deadline.left(what)
        chunks.append(chunk)
    return b"".join(chunks)


def _rewind(body: bytes | IO[bytes] | None) -> None:
    if body is not None and not isinstance(body, bytes):
        body.seek(0)


class Session:
    """Requests to one registry (`base_url`'s origin); answers its 401 challenges with the
    credentials, if any, and sends them nowhere else."""

    def __init__(
        self,
        host: str,
        credentials: Credentials | CredentialLookup | None = None,
        deadline: float = DEADLINE,
    ):
        self.host = host
        self.origin = origin(base_of(host))
        self.deadline = Deadline(deadline)
        self._credentials = credentials
        self._authorization: str | None = None  # sent to the registry's origin once a challenge was met

    def _own(self, url: str) -> bool:
        return origin(url) == self.origin and may_carry_credentials(url)

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
        limit: int = MAX_BODY,
    ) -> Reply:
        """The exchange, authenticated if challenged; a status outside `ok` is a RegistryError.
        A URL on another origin (an upload `Location` on a storage host) gets no credentials, and
        its challenge is not answered."""
        own = self._own(url)
        authorization = self._authorization if own else None
        reply = exchange(method, url, body, headers, authorization, limit, self.deadline)
        if reply.status == 401:
            if not own:
                raise RegistryError(
                    f"{method} {url}: HTTP 401 from another origin than the registry {self.host}; "
                    "its credentials are not sent there"
                )
            self._authorization = self._answer(reply.headers.get("www-authenticate", ""))
            _rewind(body)
            reply = exchange(method, url, body, headers, self._authorization, limit, self.deadline)
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
            f"{self.host}: HTTP 401 Unauthorized with the credentials from {self.credentials.source}: "
            "wrong, or without push rights to this repository"
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
        basic = self.credentials.basic if self.credentials else None
        reply = exchange("GET", url, authorization=basic, deadline=self.deadline)
        if reply.status in (401, 403):
            if self.credentials is None:
                raise self._needs_credentials()
            raise RegistryError(
                f"{self.host}: token server {realm} refused the credentials from "
                f"{self.credentials.source}: HTTP {reply.status}"
            )
        doc = parse_json(reply.body, f"token server {realm}") if reply.status == 200 else {}
        token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{self.host}: token server {realm} gave no token (HTTP {reply.status})")
        return token
