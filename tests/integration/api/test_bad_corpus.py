"""Issue 18's bad-input classes, for V2 and /predict, against a real server: shape bombs, huge
ranks and dimensions, mismatched data lengths, string floods, lone surrogates in every position,
deep nesting in every position, INT64/FP16 edges. Every case gets a readable 4xx (a short JSON
error that echoes none of the bulk it was sent), and /healthz keeps answering within 50 ms while
the request is in flight (the audit saw 1.65 s behind one 420 KB shape)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness import DEFAULT, Server, running_server

V2 = "/v2/models/lockstep/infer"
PREDICT = "/predict"
BIG = 2**63 - 1
# Stalls the audit saw were seconds long; a loaded 2-core host adds a few ms of scheduling noise.
HEALTHZ_BOUND_S = 0.050
MAX_ERROR_BYTES = 4096
# The server's row limit: every bound scales with it. Below the default (10,000), so that a body one
# row over it, which is only known to be over once parsed, costs a loaded CI host little.
MAX_ROWS = 2_000  # a readable error names the problem; it never carries the request's bulk

META = (
    json.loads(DEFAULT.metadata.read_text())
    if DEFAULT.metadata.is_file()
    else {"features": [], "example": {}}
)
NAMES = [f["name"] for f in META["features"]]
ROW = [META["example"][n] for n in NAMES]
WIDTH = len(NAMES)


def dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()  # not orjson: it refuses integers past 64 bits


def tensor(shape: Any, data: Any, datatype: str = "FP64", name: str = "X", **extra: Any) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data, **extra}


def v2(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return dumps({"inputs": list(inputs), **extra})


def one_row(**extra: Any) -> dict[str, Any]:
    return tensor([1, WIDTH], ROW, **extra)


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


def spliced(template: bytes, marker: bytes, value: bytes) -> bytes:
    """`template` (JSON) with the string "<marker>" replaced by raw JSON text `value`."""
    assert template.count(b'"' + marker + b'"') == 1
    return template.replace(b'"' + marker + b'"', value)


SURROGATES = {
    "high": rb'"\ud800"',
    "low": rb'"\udc00x"',
    "high-then-text": rb'"a\ud83dxyz"',
    "raw": b'"\xed\xa0\x80"',
}
DEEP = {"past-parsers": 100_000, "within-orjson": 600}


def v2_positions() -> dict[str, bytes]:
    """A V2 request with a marker string in each position a client controls."""
    row = one_row()
    return {
        "id": dumps({"id": "@", "inputs": [row]}),
        "top-key": dumps({"inputs": [row]})[:-1] + b',"@":1}',
        "parameter-key": dumps({"inputs": [row], "parameters": {"k": 1}}).replace(b'"k"', b'"@"'),
        "parameter-value": dumps({"inputs": [row], "parameters": {"k": "@"}}),
        "input-name": v2(tensor([1, WIDTH], ROW, name="@")),
        "input-datatype": v2(tensor([1, WIDTH], ROW, datatype="@")),
        "input-parameter": v2(tensor([1, WIDTH], ROW, parameters={"k": "@"})),
        "input-shape": v2(tensor(["@", WIDTH], ROW)),
        "data-value": v2(tensor([1, WIDTH], ["@", *ROW[1:]])),
        "bytes-data": v2(
            *[
                tensor([1], ["@" if i == 0 else v], "BYTES" if i == 0 else "FP64", n)
                for i, (n, v) in enumerate(zip(NAMES, ROW, strict=True))
            ]
        ),
        "output-name": dumps({"inputs": [row], "outputs": [{"name": "@"}]}),
        "output-parameter": dumps(
            {"inputs": [row], "outputs": [{"name": "label", "parameters": {"k": "@"}}]}
        ),
    }


def predict_positions() -> dict[str, bytes]:
    named = dict(zip(NAMES, ROW, strict=True))
    return {
        "top-key": dumps({"instances": [named], "@": 1}),
        "feature-key": dumps({"instances": [{**named, "@": 1}]}),
        "value": dumps({"instances": [{**named, NAMES[0]: "@"}]}),
        "positional-value": dumps({"instances": [["@", *ROW[1:]]]}),
        "row": dumps({"instances": ["@"]}),
        "instances": dumps({"instances": "@"}),
    }


def cases() -> Iterator[Any]:
    row = one_row()
    # Shape bombs, huge ranks, huge dimensions
    yield "v2-shape-230-dims-of-2^63", V2, v2(tensor([BIG] * 230, []))
    yield "v2-shape-20000-dims-of-2^63", V2, v2(tensor([BIG] * 20_000, []))
    yield "v2-shape-one-million-ones", V2, v2(tensor([1] * 1_000_000, ROW))
    yield "v2-rank-3", V2, v2(tensor([1, 1, WIDTH], [ROW]))
    yield "v2-rank-0", V2, v2(tensor([], []))
    yield "v2-dimension-2^63", V2, v2(tensor([BIG, WIDTH], ROW))
    yield "v2-dimension-2^64-as-float", V2, v2(tensor([2**64, WIDTH], ROW))
    yield "v2-dimension-10^4000", V2, spliced(v2(tensor(["@", WIDTH], ROW)), b"@", b"1" + b"0" * 4000)
    yield "v2-dimension-negative", V2, v2(tensor([-1, WIDTH], ROW))
    yield "v2-dimension-float", V2, v2(tensor([1.0, WIDTH], ROW))
    yield "v2-dimension-bool", V2, v2(tensor([True, WIDTH], ROW))
    yield "v2-dimension-rows-over-limit", V2, v2(tensor([MAX_ROWS + 1, WIDTH], ROW))
    yield "v2-dimension-width-over-features", V2, v2(tensor([1, WIDTH + 1], [*ROW, 1.0]))
    yield "v2-shape-not-a-list", V2, v2(tensor({"a": 1}, ROW))
    # Mismatched data lengths
    yield "v2-data-one-short", V2, v2(tensor([2, WIDTH], (ROW * 2)[:-1]))
    yield "v2-data-one-long", V2, v2(tensor([1, WIDTH], [*ROW, 1.0]))
    yield "v2-data-1000-rows-claimed-1-sent", V2, v2(tensor([1000, WIDTH], ROW))
    yield "v2-data-nesting-ragged", V2, v2(tensor([2, WIDTH], [ROW, ROW[:-1]]))
    yield "v2-data-nesting-deeper-than-shape", V2, v2(tensor([1, WIDTH], [[[v] for v in ROW]]))
    yield (
        "v2-columns-differing-rows",
        V2,
        v2(
            *[
                tensor([1 + (i == 3)], [v] * (1 + (i == 3)), name=n)
                for i, (n, v) in enumerate(zip(NAMES, ROW, strict=True))
            ]
        ),
    )
    yield "predict-row-short", PREDICT, dumps({"instances": [ROW[:-1]]})
    yield "predict-row-long", PREDICT, dumps({"instances": [[*ROW, 1.0]]})
    yield "predict-rows-over-limit", PREDICT, dumps({"instances": [ROW] * (MAX_ROWS + 1)})
    # String floods
    yield "v2-bytes-flood", V2, v2(tensor([200_000], ["x"] * 200_000, "BYTES", NAMES[0]))
    yield "v2-id-long", V2, dumps({"id": "i" * 100_000, "inputs": [row]})
    yield "v2-unknown-keys-flood", V2, dumps({"inputs": [row], **{f"k{i}": 0 for i in range(100_000)}})
    yield (
        "v2-parameters-flood",
        V2,
        dumps({"inputs": [row], "parameters": {f"k{i}": "v" for i in range(100_000)}}),
    )
    yield "predict-string-values-flood", PREDICT, dumps({"instances": [["s"] * WIDTH] * MAX_ROWS})
    yield "predict-unknown-keys-flood", PREDICT, dumps({"instances": [{f"k{i}": 0 for i in range(400_000)}]})
    yield "predict-zeros-flood", PREDICT, b'{"instances":[[' + b"0," * 2_000_000 + b"0]]}"
    yield (
        "v2-zeros-flood",
        V2,
        v2(tensor([1, WIDTH], ROW))[:-3].replace(b"]}]", b"") + b"," + b"0," * 2_000_000 + b"0]}]}",
    )
    # Lone surrogates in every position
    for where, body in v2_positions().items():
        for kind, text in SURROGATES.items():
            yield f"v2-surrogate-{kind}-in-{where}", V2, spliced(body, b"@", text)
    for where, body in predict_positions().items():
        for kind, text in SURROGATES.items():
            yield f"predict-surrogate-{kind}-in-{where}", PREDICT, spliced(body, b"@", text)
    # Deep nesting in every position
    for where, body in v2_positions().items():
        for depth_name, depth in DEEP.items():
            yield f"v2-deep-{depth_name}-in-{where}", V2, spliced(body, b"@", nested(depth))
    for where, body in predict_positions().items():
        for depth_name, depth in DEEP.items():
            yield f"predict-deep-{depth_name}-in-{where}", PREDICT, spliced(body, b"@", nested(depth))
    yield "predict-deep-body", PREDICT, nested(100_000)
    yield "v2-deep-body", V2, nested(100_000, b"{}")
    # INT64 / FP16 edges
    yield "v2-int64-2^63", V2, v2(tensor([1, WIDTH], [2**63, *ROW[1:]], "INT64"))
    yield (
        "v2-int64-below-min",
        V2,
        spliced(v2(tensor([1, WIDTH], ["@", *ROW[1:]], "INT64")), b"@", b"-9223372036854775809"),
    )
    yield (
        "v2-uint64-2^64",
        V2,
        spliced(v2(tensor([1, WIDTH], ["@", *ROW[1:]], "UINT64")), b"@", b"18446744073709551616"),
    )
    yield "v2-uint64-negative", V2, v2(tensor([1, WIDTH], [-1, *[int(v) for v in ROW[1:]]], "UINT64"))
    yield "v2-int32-2^31", V2, v2(tensor([1, WIDTH], [2**31, *[int(v) for v in ROW[1:]]], "INT32"))
    yield "v2-int64-float-value", V2, v2(tensor([1, WIDTH], [1.5, *[int(v) for v in ROW[1:]]], "INT64"))
    yield "v2-fp16-65505", V2, v2(tensor([1, WIDTH], [65505.0, *ROW[1:]], "FP16"))
    yield "v2-fp16-1e300", V2, v2(tensor([1, WIDTH], [1e300, *ROW[1:]], "FP16"))
    yield "v2-fp64-1e999", V2, spliced(v2(tensor([1, WIDTH], ["@", *ROW[1:]])), b"@", b"1e999")
    yield "v2-fp64-nan-token", V2, spliced(v2(tensor([1, WIDTH], ["@", *ROW[1:]])), b"@", b"NaN")
    yield (
        "predict-int-10^4000",
        PREDICT,
        spliced(dumps({"instances": [["@", *ROW[1:]]]}), b"@", b"1" + b"0" * 4000),
    )


CASES = list(cases())
# Edges on the accepted side: the service takes them (a 200), so the refusals above are exact.
ACCEPTED = [
    ("v2-int64-max", V2, v2(tensor([1, WIDTH], [BIG, *[int(v) for v in ROW[1:]]], "INT64"))),
    ("v2-int64-min", V2, v2(tensor([1, WIDTH], [-(2**63), *[int(v) for v in ROW[1:]]], "INT64"))),
    ("v2-fp16-65504", V2, v2(tensor([1, WIDTH], [65504.0, *ROW[1:]], "FP16"))),
    (
        "v2-valid-surrogate-pair-in-id",
        V2,
        spliced(dumps({"id": "@", "inputs": [one_row()]}), b"@", rb'"\ud83d\ude00"'),
    ),
    # /predict has no integer types: 2**64 is a number like any other (orjson reads it as a float).
    (
        "predict-int-2^64",
        PREDICT,
        spliced(dumps({"instances": [["@", *ROW[1:]]]}), b"@", b"18446744073709551616"),
    ),
    ("v2-shape-max-rows", V2, v2(tensor([MAX_ROWS, WIDTH], ROW * MAX_ROWS))),
]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server(DEFAULT, LOCKSTEP_MAX_ROWS=str(MAX_ROWS)) as running:
        yield running


def post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        reply = connection.getresponse()
        return reply.status, reply.read()
    finally:
        connection.close()


def slowest_healthz_during(port: int, path: str, body: bytes) -> tuple[float, int, bytes]:
    """POST `body` while a kept-alive connection polls /healthz: the slowest answer, and the reply."""
    outcome: list[tuple[int, bytes]] = []
    sender = threading.Thread(target=lambda: outcome.append(post(port, path, body)))
    probe = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    slowest = 0.0
    try:
        probe.request("GET", "/healthz")
        probe.getresponse().read()  # connected and warm before the request goes out
        sender.start()
        polls = 0
        while sender.is_alive() or polls == 0:
            started = time.perf_counter()
            probe.request("GET", "/healthz")
            reply = probe.getresponse()
            reply.read()
            assert reply.status == 200
            slowest = max(slowest, time.perf_counter() - started)
            polls += 1
        sender.join()
    finally:
        probe.close()
    [(status, answer)] = outcome
    return slowest, status, answer


def readable_error(path: str, status: int, answer: bytes) -> str:
    assert 400 <= status < 500, (status, answer[:300])
    assert len(answer) <= MAX_ERROR_BYTES, f"{len(answer)}-byte error: {answer[:200]!r}"
    doc = json.loads(answer)
    message = doc["error"] if path == V2 else doc["error"]["message"]
    assert isinstance(message, str)
    assert 0 < len(message) <= 500
    return message


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(("path", "body"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_bad_case_gets_a_readable_4xx_and_healthz_keeps_answering(
    server: Server, path: str, body: bytes
) -> None:
    slowest, status, answer = slowest_healthz_during(server.port, path, body)
    readable_error(path, status, answer)
    if slowest > HEALTHZ_BOUND_S:  # once more: scheduling noise does not repeat, a stall does
        slowest = min(slowest, slowest_healthz_during(server.port, path, body)[0])
    assert slowest <= HEALTHZ_BOUND_S, f"/healthz took {slowest * 1000:.0f} ms behind this request"


@pytest.mark.slow
@pytest.mark.parametrize(("path", "body"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_edges_on_the_accepted_side_are_answered(server: Server, path: str, body: bytes) -> None:
    status, answer = post(server.port, path, body)
    assert status == 200, answer[:300]


def test_the_corpus_covers_every_class_for_both_endpoints() -> None:
    names = [c[0] for c in CASES]
    for endpoint in ("v2", "predict"):
        for word in ("surrogate", "deep", "flood"):
            assert any(n.startswith(endpoint) and word in n for n in names), (endpoint, word)
    for word in ("shape", "rank", "dimension", "data", "int64", "fp16"):
        assert any(n.startswith(f"v2-{word}") for n in names), word
    assert len(set(names)) == len(names)
