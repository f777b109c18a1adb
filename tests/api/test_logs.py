"""api.logs: one JSON object per log line."""

from __future__ import annotations


def test_json_formatter_emits_one_line() -> None:
    import logging

    import orjson

    from api.logs import JsonFormatter

    record = logging.LogRecord("api.access", logging.INFO, __file__, 1, "request", None, None)
    record.__dict__.update({"request_id": "r1", "status": 200})
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert orjson.loads(line) | {"ts": None} == {
        "ts": None,
        "level": "info",
        "logger": "api.access",
        "message": "request",
        "request_id": "r1",
        "status": 200,
    }
