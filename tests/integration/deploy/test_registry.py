"""`make push`: the registry serves exactly the built manifest and layers, the SBOM is attached as an
artifact referring to the image without changing its digest, and the pulled image runs; to a registry
that wants credentials (the reference registry with htpasswd, and with a token server: the Bearer
flow) the push authenticates with them, and without them fails in one line naming the registry."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
import urllib.request
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from imagetool import platforms
from imagetool.images import image
from imagetool.ship import registry
from imagetool.ship.container import hardened_container
from imagetool.ship.registry import Credentials, OciTarball, Registry, RegistryError
from imagetool.ship.registry_client import (
    ENV_PASSWORD,
    ENV_USERNAME,
    MAX_BODY,
    Session,
    docker_config_credentials,
    exchange,
    find_credentials,
    parse_challenge,
)
from tests.integration.deploy.conftest import imagetool
from tests.integration.deploy.hostile_registry import Hostile, hostile_registry
from tests.integration.deploy.token_server import SERVICE, TokenServer

pytestmark = pytest.mark.docker


def fake_sbom(digest: str) -> bytes:
    """A minimal CycloneDX document describing `digest` (the real one comes from imagetool.ship.sbom)."""
    doc = {"bomFormat": "CycloneDX", "specVersion": "1.6", "metadata": {"component": {"version": digest}}}
    return json.dumps(doc).encode()


def test_registry_serves_the_built_manifest_and_blobs_byte_for_byte(
    registry_server: Registry, built_image: OciTarball, pushed: str
) -> None:
    assert pushed == built_image.digest
    reply = registry.get_manifest(registry_server, "latest")
    assert reply.headers["docker-content-digest"] == built_image.digest
    assert reply.body == built_image.manifest
    for desc in built_image.blobs:  # fetch_blob checks each blob's sha256 against its digest
        assert len(registry.fetch_blob(registry_server, desc["digest"])) == desc["size"]


def test_push_refuses_a_tarball_that_is_not_the_locked_digest(
    registry_server: Registry, built_image: OciTarball
) -> None:
    other = "sha256:" + "0" * 64
    with pytest.raises(RegistryError, match=f"holds {built_image.digest}, image.lock says {other}"):
        registry.push_image(registry_server, built_image, other)


def test_pushing_again_uploads_nothing_and_keeps_the_digest(
    registry_server: Registry, built_image: OciTarball, pushed: str
) -> None:
    for desc in built_image.blobs:
        with built_image.blob(desc["digest"]) as data:
            assert not registry.push_blob(registry_server, desc["digest"], desc["size"], data)
    assert registry.push_image(registry_server, built_image, pushed) == pushed


def test_registry_refuses_a_blob_whose_bytes_are_not_its_digest(registry_server: Registry) -> None:
    with pytest.raises(RegistryError, match="HTTP 400"):
        registry.push_blob(registry_server, registry.sha256(b"one"), 3, b"two")


def test_sbom_is_attached_as_a_referrer_without_changing_the_image_digest(
    registry_server: Registry, pushed: str, repo_root: Path
) -> None:
    sbom_file = repo_root / registry.SBOM_FILE
    sbom = sbom_file.read_bytes() if sbom_file.is_file() else fake_sbom(pushed)
    if json.loads(sbom)["metadata"]["component"]["version"] != pushed:
        sbom = fake_sbom(pushed)  # the committed SBOM describes image.lock's digest, not this build
    artifact = registry.attach_sbom(registry_server, pushed, sbom)
    assert registry.attach_sbom(registry_server, pushed, sbom) == artifact  # same SBOM, same digest
    [found] = registry.referrers(registry_server, pushed)
    assert found == {
        "mediaType": registry.OCI_MANIFEST,
        "digest": artifact,
        "size": len(registry.get_manifest(registry_server, artifact).body),
        "artifactType": registry.SBOM_TYPE,
    }
    manifest = json.loads(registry.get_manifest(registry_server, artifact).body)
    assert manifest["subject"]["digest"] == pushed
    assert registry.fetch_blob(registry_server, manifest["layers"][0]["digest"]) == sbom
    assert registry.get_manifest(registry_server, "latest").headers["docker-content-digest"] == pushed


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"not json", "not a CycloneDX JSON document"),
        (b'{"bomFormat": "SPDX", "metadata": {"component": {"version": "DIGEST"}}}', "bomFormat is 'SPDX'"),
        (
            b'{"bomFormat": "CycloneDX", "metadata": {"component": {"version": "sha256:0"}}}',
            "describes sha256:0",
        ),
    ],
    ids=["not-json", "other-format", "other-image"],
)
def test_sbom_check_names_what_is_wrong(document: bytes, message: str) -> None:
    digest = "sha256:" + "a" * 64
    with pytest.raises(RegistryError, match=message):
        registry.check_sbom(document.replace(b"DIGEST", digest.encode()), Path("sbom.json"), digest)


@pytest.mark.parametrize(
    "text",
    ["localhost", "lockstep/team", "127.0.0.1:99999", "host:5000/Upper", "http://h:5000", "ghcr.io/Owner"],
)
def test_cli_rejects_a_malformed_registry_with_exit_2(text: str, repo_root: Path) -> None:
    proc = imagetool("registry", "push", text, cwd=repo_root)
    assert proc.returncode == 2
    assert f"registry {text!r} is not HOST:PORT[/PREFIX] or NAME.DOMAIN[/PREFIX]" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("text", "base_url"),
    [
        ("ghcr.io/owner/repo", "https://ghcr.io/v2/owner/repo/lockstep"),
        ("registry.example.com:5000", "https://registry.example.com:5000/v2/lockstep"),
        ("127.0.0.1:5000/team", "http://127.0.0.1:5000/v2/team/lockstep"),
        ("[::1]:5000", "http://[::1]:5000/v2/lockstep"),
    ],
)
def test_registry_without_a_port_is_https_on_its_default_port(text: str, base_url: str) -> None:
    assert Registry.parse(text).base_url == base_url


def test_cli_reference_is_the_registry_and_image_lock_index_digest(repo_root: Path) -> None:
    """The index: what the deploy files pin and `make push` pushes (each node pulls its platform)."""
    proc = imagetool("registry", "reference", "ghcr.io/owner/repo", cwd=repo_root)
    assert proc.returncode == 0, proc.stderr
    digest = json.loads((repo_root / "image.lock").read_text())["index"]["digest"]
    assert proc.stdout == f"ghcr.io/owner/repo/lockstep@{digest}\n"


def test_cli_names_an_unreachable_registry_with_exit_2(repo_root: Path) -> None:
    proc = imagetool("registry", "referrers", "127.0.0.1:9", "sha256:" + "a" * 64, cwd=repo_root)
    assert proc.returncode == 2
    assert "127.0.0.1:9" in proc.stderr
    assert "no answer from the registry" in proc.stderr


def test_pulled_image_runs_and_predicts(registry_server: Registry, pushed: str) -> None:
    ref = f"{registry_server.reference}@{pushed}"
    subprocess.run(["docker", "pull", "-q", ref], capture_output=True, text=True, check=True)
    try:
        with hardened_container(ref) as running:
            with urllib.request.urlopen(f"{running.url}/model", timeout=5) as reply:
                model = json.load(reply)
            assert reply.status == 200
            assert model
    finally:
        subprocess.run(["docker", "rmi", ref], capture_output=True, check=False)


# --- authentication: where credentials come from -----------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('Basic realm="lockstep-test"', ("basic", {"realm": "lockstep-test"})),
        (
            'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/r/lockstep:pull,push"',
            (
                "bearer",
                {
                    "realm": "https://ghcr.io/token",
                    "service": "ghcr.io",
                    "scope": "repository:o/r/lockstep:pull,push",
                },
            ),
        ),
        ("", ("", {})),
    ],
    ids=["basic", "bearer", "none"],
)
def test_challenge_is_parsed_with_quoted_commas(header: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_challenge(header) == expected


def _config(tmp_path: Path, doc: object) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(doc))
    return tmp_path


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "auths",
    [
        {"ghcr.io": {"auth": _b64("user:pa:ss")}},
        {"https://ghcr.io": {"auth": _b64("user:pa:ss")}},
        {"https://ghcr.io/v1/": {"username": "user", "password": "pa:ss"}},
    ],
    ids=["host", "url", "fields"],
)
def test_docker_login_credentials_are_found_for_the_host(tmp_path: Path, auths: dict[str, object]) -> None:
    found = docker_config_credentials("ghcr.io", _config(tmp_path, {"auths": auths}) / "config.json")
    assert found is not None
    assert (found.username, found.password) == ("user", "pa:ss")
    assert "pa:ss" not in repr(found)
    assert "pa:ss" not in found.source


def test_docker_config_without_the_host_gives_no_credentials(tmp_path: Path) -> None:
    config = _config(tmp_path, {"auths": {"other.example.com": {"auth": _b64("u:p")}}})
    assert find_credentials("ghcr.io", {"DOCKER_CONFIG": str(config)}) is None
    assert find_credentials("ghcr.io", {"DOCKER_CONFIG": str(tmp_path / "absent")}) is None


def test_environment_credentials_come_before_docker_config(tmp_path: Path) -> None:
    config = _config(tmp_path, {"auths": {"ghcr.io": {"auth": _b64("config:user")}}})
    environ = {ENV_USERNAME: "env", ENV_PASSWORD: "secret", "DOCKER_CONFIG": str(config)}
    found = find_credentials("ghcr.io", environ)
    assert found is not None
    assert (found.username, found.password, found.source) == (
        "env",
        "secret",
        f"{ENV_USERNAME}/{ENV_PASSWORD}",
    )


def test_credential_helper_named_by_docker_config_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = tmp_path / "bin" / "docker-credential-lockstep-test"
    helper.parent.mkdir()
    # A real helper program: the host on stdin (no newline, as docker writes it), {Username, Secret} out.
    helper.write_text(
        '#!/bin/sh\n[ "$1" = get ] && [ "$(cat)" = ghcr.io ] && '
        'echo \'{"ServerURL": "ghcr.io", "Username": "helped", "Secret": "s3"}\'\n'
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}:{os.environ['PATH']}")
    environ = {
        "DOCKER_CONFIG": str(_config(tmp_path, {"auths": {"ghcr.io": {}}, "credsStore": "lockstep-test"}))
    }
    found = find_credentials("ghcr.io", environ)
    assert found is not None
    assert (found.username, found.password, found.source) == ("helped", "s3", helper.name)
    assert find_credentials("other.example.com", environ) is None  # the helper has nothing for it


@pytest.mark.parametrize(
    ("environ", "config", "message"),
    [
        (
            {ENV_USERNAME: "u"},
            None,
            f"{ENV_USERNAME} and {ENV_PASSWORD} go together, and {ENV_PASSWORD} is not set",
        ),
        (
            {ENV_PASSWORD: "p"},
            None,
            f"{ENV_USERNAME} and {ENV_PASSWORD} go together, and {ENV_USERNAME} is not set",
        ),
        ({}, "{not json", "config.json: docker's configuration is not JSON"),
        (
            {},
            {"auths": {"ghcr.io": {"auth": "%%%"}}},
            "auths['ghcr.io'].auth is not base64 of `username:password`",
        ),
        ({}, {"auths": {"ghcr.io": {"auth": _b64("nocolon")}}}, "is not base64 of `username:password`"),
    ],
    ids=["username-only", "password-only", "config-not-json", "auth-not-base64", "auth-without-colon"],
)
def test_bad_credential_sources_are_named(
    tmp_path: Path, environ: dict[str, str], config: object, message: str
) -> None:
    if config is not None:
        (tmp_path / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    with pytest.raises(RegistryError, match=re.escape(message)):
        find_credentials("ghcr.io", {**environ, "DOCKER_CONFIG": str(tmp_path)})


def test_credentials_are_not_sent_to_a_plain_http_token_realm() -> None:
    session = Session("registry.example.com", Credentials("u", "p", "the test"))
    with pytest.raises(
        RegistryError, match=re.escape("token realm 'http://auth.example.com/token' is not an HTTPS URL")
    ):
        session._answer('Bearer realm="http://auth.example.com/token",service="s",scope="repository:x:pull"')


# --- authentication against the reference registry ---------------------------------------------


def run_cli(args: list[str], cwd: Path, docker_config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m imagetool registry ...` with only the credentials given here (none from this host)."""
    base = {k: v for k, v in os.environ.items() if k not in (ENV_USERNAME, ENV_PASSWORD, "DOCKER_CONFIG")}
    full = {**base, "DOCKER_CONFIG": str(docker_config), **env}
    return imagetool("registry", *args, cwd=cwd, env=full)


@pytest.fixture(scope="module")
def locked_tree(built_image: OciTarball, repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where `image.lock` names the built image (the tree's own image.lock when the tree
    is locked) and `sbom.cdx.json` describes it: where the CLI pushes from."""
    tree = tmp_path_factory.mktemp("locked")
    lock = json.loads((repo_root / "image.lock").read_text())
    (tree / "image.lock").write_text(json.dumps({**lock, "digest": built_image.digest}))
    committed = repo_root / registry.SBOM_FILE
    sbom = committed.read_bytes() if committed.is_file() else b"{}"
    if json.loads(sbom).get("metadata", {}).get("component", {}).get("version") != built_image.digest:
        sbom = fake_sbom(built_image.digest)  # the tree is not locked: an SBOM of this build
    (tree / "sbom.cdx.json").write_bytes(sbom)
    (tree / "docker").mkdir()  # an empty DOCKER_CONFIG: no credentials from this host
    return tree


def push_args(reg: Registry, built_image: OciTarball) -> list[str]:
    return ["push", f"{reg.host}/{reg.prefix}", "--oci", str(built_image.path), "--sbom", "sbom.cdx.json"]


def secret_env(credentials: Credentials, password: str | None = None) -> dict[str, str]:
    return {ENV_USERNAME: credentials.username, ENV_PASSWORD: password or credentials.password}


def assert_one_line_401(proc: subprocess.CompletedProcess[str], reg: Registry, *words: str) -> None:
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"error: {reg.host}: HTTP 401 Unauthorized"), line
    for word in words:
        assert word in line


def assert_pushed_with_sbom(reg: Registry, credentials: Credentials, digest: str, tree: Path) -> None:
    """What the registry itself reports, asked with the credentials."""
    authed = Registry.parse(f"{reg.host}/{reg.prefix}", credentials=credentials)
    assert registry.get_manifest(authed, "latest").headers["docker-content-digest"] == digest
    [found] = registry.referrers(authed, digest)
    assert found["artifactType"] == registry.SBOM_TYPE
    layer = json.loads(registry.get_manifest(authed, found["digest"]).body)["layers"][0]
    assert registry.fetch_blob(authed, layer["digest"]) == (tree / "sbom.cdx.json").read_bytes()


@pytest.fixture(params=["htpasswd_registry", "token_registry"], ids=["basic", "bearer"])
def secured(request: pytest.FixtureRequest) -> Registry:
    """Each registry that wants credentials, anonymous."""
    found = request.getfixturevalue(request.param)
    return found[0] if isinstance(found, tuple) else found  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def basic_pushed(
    htpasswd_registry: Registry, registry_credentials: Credentials, built_image: OciTarball, locked_tree: Path
) -> subprocess.CompletedProcess[str]:
    """`python -m imagetool registry push` to the htpasswd registry, credentials from the environment."""
    return run_cli(
        push_args(htpasswd_registry, built_image),
        locked_tree,
        locked_tree / "docker",
        **secret_env(registry_credentials),
    )


def test_push_without_credentials_fails_in_one_line_naming_the_registry(
    secured: Registry, built_image: OciTarball, locked_tree: Path
) -> None:
    proc = run_cli(push_args(secured, built_image), locked_tree, locked_tree / "docker")
    assert_one_line_401(
        proc, secured, f"set {ENV_USERNAME} and {ENV_PASSWORD}, or `docker login {secured.host}`"
    )
    assert proc.stdout == ""


def test_push_with_basic_credentials_gives_the_locked_digest_and_the_sbom(
    htpasswd_registry: Registry,
    registry_credentials: Credentials,
    built_image: OciTarball,
    locked_tree: Path,
    basic_pushed: subprocess.CompletedProcess[str],
) -> None:
    assert basic_pushed.returncode == 0, basic_pushed.stderr
    assert f"pushed {htpasswd_registry.reference}@{built_image.digest}" in basic_pushed.stdout
    assert registry_credentials.password not in basic_pushed.stdout + basic_pushed.stderr
    assert_pushed_with_sbom(htpasswd_registry, registry_credentials, built_image.digest, locked_tree)


def test_docker_login_credentials_are_used_when_the_environment_has_none(
    htpasswd_registry: Registry,
    registry_credentials: Credentials,
    locked_tree: Path,
    tmp_path: Path,
    basic_pushed: subprocess.CompletedProcess[str],
) -> None:
    auth = _b64(f"{registry_credentials.username}:{registry_credentials.password}")
    config = _config(tmp_path, {"auths": {htpasswd_registry.host: {"auth": auth}}})
    proc = run_cli(["referrers", f"{htpasswd_registry.host}/{htpasswd_registry.prefix}"], locked_tree, config)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(f" {registry.SBOM_TYPE}\n")  # the SBOM basic_pushed attached


def test_wrong_password_is_refused_in_one_line_without_the_password(
    secured: Registry, registry_credentials: Credentials, locked_tree: Path
) -> None:
    wrong = "not-" + registry_credentials.password
    env = secret_env(registry_credentials, wrong)
    proc = run_cli(
        ["referrers", f"{secured.host}/{secured.prefix}"], locked_tree, locked_tree / "docker", **env
    )
    assert proc.returncode == 2
    [line] = proc.stderr.splitlines()
    assert f"credentials from {ENV_USERNAME}/{ENV_PASSWORD}" in line
    assert secured.host in line
    assert "401" in line
    for secret in (wrong, registry_credentials.username):  # nothing of the credentials, not even the user
        assert secret not in proc.stdout + proc.stderr


def token_scopes(tokens: TokenServer) -> set[tuple[str, str, frozenset[str]]]:
    """(service, resource, actions) of each token request, the actions as a set."""
    scopes = set()
    for request in tokens.requests:
        resource, actions = request["scope"][0].rsplit(":", 1)
        scopes.add((request["service"][0], resource, frozenset(actions.split(","))))
    return scopes


def test_push_with_bearer_token_flow_gives_the_locked_digest_and_the_sbom(
    token_registry: tuple[Registry, TokenServer],
    registry_credentials: Credentials,
    built_image: OciTarball,
    locked_tree: Path,
) -> None:
    reg, tokens = token_registry
    proc = run_cli(
        push_args(reg, built_image), locked_tree, locked_tree / "docker", **secret_env(registry_credentials)
    )
    assert proc.returncode == 0, proc.stderr
    assert f"pushed {reg.reference}@{built_image.digest}" in proc.stdout
    assert registry_credentials.password not in proc.stdout + proc.stderr
    assert_pushed_with_sbom(reg, registry_credentials, built_image.digest, locked_tree)
    # The registry's challenges drove the flow: its service, and the push scope for this repository
    # (the reference registry lists the actions in either order: "pull,push" or "push,pull").
    assert (SERVICE, f"repository:{reg.name}", frozenset({"pull", "push"})) in token_scopes(tokens)


def test_credentials_are_not_sent_along_a_redirect() -> None:
    """Registries redirect blob downloads to storage hosts: the Authorization stays with the registry."""
    seen: dict[str, str | None] = {}

    class Storage(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen[self.path] = self.headers.get("Authorization")
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Registry307(Storage):
        def do_GET(self) -> None:
            seen[self.path] = self.headers.get("Authorization")
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{storage.server_address[1]}/blob")
            self.send_header("Content-Length", "0")
            self.end_headers()

    storage, front = (
        ThreadingHTTPServer(("127.0.0.1", 0), Storage),
        ThreadingHTTPServer(("127.0.0.1", 0), Registry307),
    )
    for server in (storage, front):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        reply = exchange(
            "GET", f"http://127.0.0.1:{front.server_address[1]}/v2/x/blobs/y", authorization="Basic c2VjcmV0"
        )
    finally:
        for server in (storage, front):
            server.shutdown()
            server.server_close()
    assert reply.body == b"ok"
    assert seen == {"/v2/x/blobs/y": "Basic c2VjcmV0", "/blob": None}


def test_credentials_are_looked_up_only_when_a_registry_asks(
    registry_server: Registry, htpasswd_registry: Registry, locked_tree: Path, tmp_path: Path
) -> None:
    """A docker config naming a helper that is not installed stops nothing on an open registry."""
    config = _config(tmp_path, {"credsStore": "lockstep-absent-helper"})
    open_run = run_cli(["referrers", f"{registry_server.host}/{registry_server.prefix}"], locked_tree, config)
    assert open_run.returncode == 0, open_run.stderr
    secured_run = run_cli(
        ["referrers", f"{htpasswd_registry.host}/{htpasswd_registry.prefix}"], locked_tree, config
    )
    assert secured_run.returncode == 2
    assert (
        "names credential helper docker-credential-lockstep-absent-helper, which did not run"
        in secured_run.stderr
    )


# --- a hostile registry: credentials stay with the registry's origin ----------------------------

HOSTILE_USER = Credentials("mallory-target", "s3cret-password", "the test")


def hostile(mode: str, other: str) -> tuple[Hostile, AbstractContextManager[int]]:
    state = Hostile(HOSTILE_USER.basic, mode)
    return state, hostile_registry(state, other)


@pytest.mark.parametrize("other", ["port", "localhost"], ids=["other-port", "localhost-for-127.0.0.1"])
def test_upload_location_on_another_origin_gets_no_credentials(other: str) -> None:
    state, server = hostile("upload", other)
    with server as port:
        reg = Registry.parse(f"127.0.0.1:{port}/test", credentials=HOSTILE_USER)
        assert registry.push_blob(reg, registry.sha256(b"layer"), 5, b"layer")
    [upload] = [s for s in state.seen if s.path.startswith("/elsewhere/")]
    assert (upload.method, upload.host) == ("PUT", state.other.removeprefix("http://"))
    assert upload.authorization is None
    # The registry's own origin did get them: the test would pass vacuously otherwise.
    assert any(s.authorization == HOSTILE_USER.basic for s in state.seen if s.host == f"127.0.0.1:{port}")


@pytest.mark.parametrize("other", ["port", "localhost"], ids=["other-port", "localhost-for-127.0.0.1"])
def test_redirect_to_another_origin_gets_no_credentials(other: str) -> None:
    state, server = hostile("redirect", other)
    with server as port:
        reg = Registry.parse(f"127.0.0.1:{port}/test", credentials=HOSTILE_USER)
        assert registry.get_manifest(reg, "latest").body == b"{}"
    [followed] = [s for s in state.seen if s.path.startswith("/elsewhere/")]
    assert followed.authorization is None


def test_an_https_registry_sends_no_credentials_to_plain_http_or_other_hosts() -> None:
    session = Session("registry.example.com", HOSTILE_USER)
    assert session._own("https://registry.example.com/v2/x")
    assert session._own("https://registry.example.com:443/v2/x")
    for url in (
        "http://registry.example.com/v2/x",  # same host, plain HTTP
        "https://registry.example.com:8443/v2/x",
        "https://storage.example.com/v2/x",
    ):
        assert not session._own(url), url
    with pytest.raises(RegistryError, match="credentials go over HTTPS only"):
        exchange("GET", "http://registry.example.com/v2/", authorization=HOSTILE_USER.basic)


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("bad-json", "the registry's answer is not JSON"),
        ("bad-index", "not an image index"),
        ("flood", f"the answer is larger than {MAX_BODY} bytes"),
    ],
)
def test_malformed_or_oversized_answers_are_one_line_and_exit_2(
    mode: str, message: str, tmp_path: Path
) -> None:
    _, server = hostile(mode, "port")
    (tmp_path / "docker").mkdir()
    with server as port:
        args = ["referrers", f"127.0.0.1:{port}/test", "sha256:" + "a" * 64]
        proc = run_cli(args, tmp_path, tmp_path / "docker", **secret_env(HOSTILE_USER))
    assert proc.returncode == 2
    [line] = proc.stderr.splitlines()
    assert message in line
    for secret in (HOSTILE_USER.username, HOSTILE_USER.password, HOSTILE_USER.basic):
        assert secret not in proc.stdout + proc.stderr


def test_a_dripping_registry_is_stopped_by_the_overall_deadline() -> None:
    _, server = hostile("drip", "port")
    with server as port:
        reg = Registry.parse(f"127.0.0.1:{port}/test", credentials=HOSTILE_USER, deadline=1.5)
        with pytest.raises(RegistryError, match=r"the overall deadline of 1.5 s passed"):
            registry.get_manifest(reg, "latest")  # each byte within the socket timeout, 10 s in all


# --- both platforms and the index over them (`make push`) ------------------------------------------


RUN_PYTHON = ("docker", "run", "--rm", "--network=none", "--entrypoint", "python")


@pytest.mark.docker
@pytest.mark.slow
def test_push_index_sends_both_platforms_with_their_sboms_and_image_locks_index(
    registry_server: Registry, built_image: OciTarball, repo_root: Path
) -> None:
    """`make push`'s command: each platform's image by its locked digest, its own SBOM attached to
    that manifest, then the index, served byte for byte under image.lock's index digest."""
    lock = json.loads((repo_root / "image.lock").read_text())
    arm64, _ = image.build(repo_root, load=False, plat=platforms.ARM64)  # cached unless inputs moved
    assert arm64.digest == lock["platforms"]["linux/arm64"]["digest"], "the tree is not image.lock's"
    multi = Registry.parse(f"{registry_server.host}/multi")
    proc = imagetool(
        "registry", "push", f"{multi.host}/{multi.prefix}", "--index", "--sbom-dir", "image", cwd=repo_root
    )
    assert proc.returncode == 0, proc.stderr
    index = lock["index"]
    assert f"pushed {multi.reference}@{index['digest']} (index: linux/amd64, linux/arm64)" in proc.stdout
    served = registry.get_manifest(multi, "latest")
    assert registry.sha256(served.body) == index["digest"]
    assert served.headers["content-type"].startswith(registry.OCI_INDEX)
    for entry in json.loads(served.body)["manifests"]:
        name = f"{entry['platform']['os']}/{entry['platform']['architecture']}"
        assert entry["digest"] == index["manifests"][name]["digest"]
        [sbom_ref] = registry.referrers(multi, entry["digest"])
        layer = json.loads(registry.get_manifest(multi, sbom_ref["digest"]).body)["layers"][0]
        document = json.loads(registry.fetch_blob(multi, layer["digest"]))
        assert document["metadata"]["component"]["version"] == entry["digest"]  # that platform's SBOM
    # What the deploy files pin: the engine pulls the index by digest and takes each platform's image.
    ref = f"{multi.reference}@{index['digest']}"
    for name in index["manifests"]:
        subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, check=False)
        pulled = subprocess.run(
            ["docker", "pull", "--quiet", "--platform", name, ref],
            capture_output=True,
            text=True,
            check=False,
        )
        assert pulled.returncode == 0, pulled.stderr
        machine = subprocess.run(
            [
                *RUN_PYTHON[:3],
                "--platform",
                name,
                *RUN_PYTHON[3:],
                ref,
                "-c",
                "import platform; print(platform.machine())",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.strip()
        assert machine == {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}[name]
    subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, check=False)


def test_push_index_refuses_a_lock_without_an_index(tmp_path: Path, registry_server: Registry) -> None:
    (tmp_path / "image.lock").write_text(json.dumps({"digest": "sha256:" + "a" * 64}))
    proc = imagetool("registry", "push", f"{registry_server.host}/x", "--index", cwd=tmp_path)
    assert proc.returncode == 2
    [line] = proc.stderr.splitlines()
    assert line.startswith("error: image.lock: no index over the platforms"), line
    assert "`make lock-image` records one" in line
