"""The shared server helper: a chatty server cannot block on its output, a failed one says why."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness import NotReadyError, free_port, serving

# Writes `size` bytes to stdout before it listens (a pipe holds ~64 kB: past that, a writer
# nobody reads blocks), then answers every GET with 200 and logs each one to stdout.
CHATTY = """
import http.server, sys
sys.stdout.write("x" * int(sys.argv[2]) + "\\n"); sys.stdout.flush()
class Reply(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *args):
        print("served", self.path, flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Reply).serve_forever()
"""


def test_serving_a_server_that_logs_a_megabyte_does_not_block(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-c", CHATTY, str(port), str(1024 * 1024)]
    with serving(command, port, "/readyz", log=tmp_path / "chatty.log", timeout=20) as server:
        assert server.url == f"http://127.0.0.1:{port}"
        assert server.process.poll() is None
        server.process.terminate()
        output = server.output(timeout=10)
    assert output.startswith(b"x" * 1024 * 1024 + b"\n")
    assert b"served /readyz" in output


def test_serving_a_server_that_exits_names_its_exit_code_and_stderr(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-c", "import sys; sys.exit('bad settings: LOCKSTEP_PORT')"]
    with (
        pytest.raises(NotReadyError, match=r"exited with 1 first\n.*bad settings: LOCKSTEP_PORT"),
        serving(command, port, "/readyz", log=tmp_path / "failing.log", timeout=20),
    ):
        pass


def test_serving_a_server_that_never_answers_gives_up_after_its_timeout(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    with (
        pytest.raises(NotReadyError, match=rf"127.0.0.1:{port}/readyz not ready after 1 s"),
        serving(command, port, "/readyz", log=tmp_path / "silent.log", timeout=1),
    ):
        pass
