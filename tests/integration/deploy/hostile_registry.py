"""A hostile registry on 127.0.0.1 for the push client's tests: it wants Basic credentials like a real
one, then points uploads and manifests at another origin (another port, or `localhost` for
`127.0.0.1`), floods, drips or answers malformed JSON. Every request is recorded with the origin it
was addressed to (its `Host` header) and the `Authorization` it carried."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from imagetool.ship.registry import OCI_INDEX, OCI_MANIFEST


@dataclass(frozen=True)
class Seen:
    method: str
    host: str  # the Host header: which origin the client addressed
    path: str
    authorization: str | None


@dataclass
class Hostile:
    """What the registry does: `mode` picks the trick, `other` is the origin it sends clients to."""

    authorization: str  # the Basic header it accepts
    mode: str = "upload"  # upload | redirect | flood | drip | bad-json | bad-index
    other: str = ""  # `http://host:port`, set by `hostile_registry`
    seen: list[Seen] = field(default_factory=list)


def _handler(state: Hostile) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self, status: int, body: bytes = b"", **headers: str) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def handle_one(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            auth = self.headers.get("Authorization")
            state.seen.append(Seen(self.command, self.headers.get("Host", ""), self.path, auth))
            if self.path.startswith("/elsewhere/"):  # the other origin: accepts anything
                self._answer(201 if self.command == "PUT" else 200, b"{}")
            elif auth != state.authorization:
                self._answer(401, WWW_Authenticate='Basic realm="hostile"')
            elif self.command == "HEAD":
                self._answer(404)
            elif self.command == "POST":
                self._answer(202, Location=f"{state.other}/elsewhere/upload")
            elif state.mode == "redirect":
                self._answer(307, Location=f"{state.other}/elsewhere/manifest")
            elif state.mode == "flood":
                self._answer(200, b"{" + b" " * (5 * 1024 * 1024) + b"}", Content_Type=OCI_MANIFEST)
            elif state.mode == "drip":
                self.send_response(200)
                self.send_header("Content-Length", "100")
                self.end_headers()
                for _ in range(100):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.1)
            elif state.mode == "bad-json":
                self._answer(200, b'{"manifests": [', Content_Type=OCI_INDEX)
            else:  # bad-index: JSON, but not an index
                self._answer(200, b'{"manifests": 5}', Content_Type=OCI_INDEX)

        def do_GET(self) -> None:
            self.handle_one()

        def do_HEAD(self) -> None:
            self.handle_one()

        def do_POST(self) -> None:
            self.handle_one()

        def do_PUT(self) -> None:
            self.handle_one()

    return Handler


@contextmanager
def hostile_registry(state: Hostile, other: str) -> Iterator[int]:
    """Serve `state` on a loopback port (yielded) and on a second one; `other` names where its
    `Location`s point: `port` (the second server) or `localhost` (this one, by another name)."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _handler(state)) for _ in range(2)]
    for server in servers:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    own, second = (server.server_address[1] for server in servers)
    state.other = f"http://127.0.0.1:{second}" if other == "port" else f"http://localhost:{own}"
    try:
        yield own
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
