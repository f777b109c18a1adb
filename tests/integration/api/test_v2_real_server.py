"""V2 over real HTTP: `python -m api` as deployed, called the way V2 clients call it (Triton's HTTP
client sends its JSON body without a Content-Type)."""

from __future__ import annotations

import http.client
import json
import urllib.request
from typing import Any

import pytest

from harness import DEFAULT, running_server


def post(port: int, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST a JSON body with no Content-Type header at all (urllib would add a form type)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", path, body=json.dumps(body).encode())
        reply = connection.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        connection.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_v2_infer_over_http_without_content_type(example: dict[str, Any]) -> None:
    names = list(example)
    tensor = {
        "name": "input-0",
        "shape": [2, len(names)],
        "datatype": "FP64",
        "data": [example[n] for n in names] * 2,
    }
    with running_server(DEFAULT, LOCKSTEP_V2_MODEL_NAME="cancer") as server:
        port = server.port
        base = f"http://127.0.0.1:{port}/v2"
        with urllib.request.urlopen(f"{base}/health/ready", timeout=10) as reply:
            assert reply.status == 200
        status, body = post(port, "/v2/models/cancer/infer", {"id": "a-1", "inputs": [tensor]})
        assert status == 200, body
        assert body["id"] == "a-1"
        assert [o["shape"] for o in body["outputs"]] == [[2], [2, 2]]
        status, body = post(
            port, "/v2/models/cancer/infer", {"inputs": [dict(tensor, shape=[3, len(names)])]}
        )
        assert status == 400
        assert "shape" in body["error"]
        status, body = post(port, "/v2/models/lockstep/infer", {"inputs": [tensor]})
        assert status == 404
        assert "cancer" in body["error"]
