"""A small token server for the reference registry's `auth: token` (the distribution token spec),
so the Bearer flow of imagetool/ship/registry_client.py is tested over real HTTP against the real registry.

GET /token?service=...&scope=repository:NAME:pull,push with Basic credentials answers
`{"token": <JWT>}`: ES256, signed by a throwaway key whose self-signed certificate is the registry's
`rootcertbundle` and travels in the JWT header's `x5c`. Wrong or no credentials get 401.
"""

from __future__ import annotations

import base64
import datetime
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

ISSUER = "lockstep-test-token-issuer"
SERVICE = "lockstep-test-registry"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def generate(cls) -> SigningKey:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    def bundle(self) -> bytes:
        """The PEM the registry trusts (`rootcertbundle`)."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def token(self, subject: str, access: list[dict[str, object]], lifetime: int = 300) -> str:
        """A JWS (compact form): ES256 signature as r||s, as JWS wants it (not DER)."""
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def granted(scopes: list[str]) -> list[dict[str, object]]:
    """Everything asked for (`repository:NAME:ACTIONS`): the server trusts whoever authenticated."""
    access: list[dict[str, object]] = []
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        access.append({"type": kind, "name": name, "actions": actions.split(",")})
    return access


@dataclass
class TokenServer:
    url: str  # the realm
    requests: list[dict[str, list[str]]]  # the query of every token request, to check the flow


@contextmanager
def token_server(key: SigningKey, username: str, password: str) -> Iterator[TokenServer]:
    """Serve /token on a free loopback port until the block ends."""
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    seen: list[dict[str, list[str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            seen.append(query)
            if url.path != "/token":
                self._reply(404, {"error": "not found"})
            elif self.headers.get("Authorization") != expected:
                self._reply(401, {"error": "bad credentials"})
            else:
                token = key.token(username, granted(query.get("scope", [])))
                self._reply(200, {"token": token, "expires_in": 300})

        def _reply(self, status: int, doc: dict[str, object]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # the tests read `requests` instead

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield TokenServer(f"http://127.0.0.1:{server.server_address[1]}/token", seen)
    finally:
        server.shutdown()
        server.server_close()


def write_bundle(key: SigningKey, path: Path) -> Path:
    path.write_bytes(key.bundle())
    return path
