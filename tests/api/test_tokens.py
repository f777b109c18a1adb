"""api.tokens through the ASGI app: bodies that would cost more than their size (keys, strings) are
refused before parsing, within bounded memory and CPU."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from api.app import create_app
from harness import make_settings
from tests.api.support import TestClient, assert_error, request_cost, unknown_keys_row


def test_the_issue_request_costs_under_50_mib_and_100_ms(ready_app: Any) -> None:
    """Issue 11's report: 16 MiB, one row of ~1.5 million unknown keys (was ~560 MiB and 2.8 s)."""
    body = unknown_keys_row(1_500_000)
    assert 14 * 2**20 < len(body) <= 16 * 2**20  # within the default body limit
    status, answer, peak_mib, cpu_seconds = request_cost(ready_app, body)
    assert (status, answer["error"]["code"]) == (422, "too_many_fields")
    print(f"\n16 MiB / 1.5M-key row: peak {peak_mib:.1f} MiB traced, {cpu_seconds * 1000:.1f} ms CPU")
    # The joined body alone is 16 MiB: nothing else may grow with the key count.
    assert peak_mib < 50
    assert cpu_seconds < 0.1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(unknown_keys_row(50_000), id="one-wide-row"),
        pytest.param(
            b'{"instances":[[1]],' + b",".join(b'"t%d":0' % i for i in range(50_000)) + b"}",
            id="many-top-level-fields",
        ),
    ],
)
def test_more_keys_than_the_objects_can_hold_are_refused_before_parsing(ready_app: Any, body: bytes) -> None:
    """Below the string bound, but a valid body's objects hold one key per feature each (issue 18)."""
    status, answer, _, cpu_seconds = request_cost(ready_app, body)
    assert (status, answer["error"]["code"]) == (422, "too_many_fields")
    assert "objects hold at most" in answer["error"]["message"]
    assert cpu_seconds < 0.1


def test_strings_beyond_any_valid_batch_are_refused_before_parsing(feature_names: list[str]) -> None:
    settings = make_settings(max_rows=2)
    bound = 1 + 2 * len(feature_names)  # the default model's features are all numeric
    with TestClient(create_app(settings)) as small:
        reply = small.post(
            "/predict", content=unknown_keys_row(bound), headers={"Content-Type": "application/json"}
        )
        error = assert_error(reply, 422, "too_many_fields")
        assert error["message"] == (
            f"body has at least {bound + 1} JSON strings; at most {bound} fit 2 rows "
            f"of {len(feature_names)} features"
        )
        # An escaped quote inside a string does not count as a string's end.
        tricky = orjson.dumps({"instances": [{'a"' * 40: 1}]})
        assert_error(
            small.post("/predict", content=tricky, headers={"Content-Type": "application/json"}),
            422,
            "invalid_instances",
        )
