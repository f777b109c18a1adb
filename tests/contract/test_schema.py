"""contract.schema: the prepared schema round-trips byte for byte, and each refusal is one line naming the
file and the key."""

from __future__ import annotations

from typing import Any

import pytest

from contract import SCHEMA_FILE, ContractError
from contract.schema import Schema
from tests.contract.support import committed, written


def test_schema_round_trips_the_prepared_schema_byte_for_byte() -> None:
    raw, doc = committed(SCHEMA_FILE)
    schema = Schema.from_json(doc, SCHEMA_FILE)
    assert written(schema.to_json()) == raw
    assert schema.names == [f["name"] for f in doc["features"]]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"schema_version": 2}, "schema.json: schema_version 2 is not 1: run `dvc repro`"),
        ({"task": "ranking"}, "schema.json: task 'ranking' is not one of classification, regression"),
        ({"target": 5}, "schema.json: target is missing or not a string"),
        ({"features": [{"kind": "numeric"}]}, "schema.json: features[0] has no name"),
        (
            {"features": [{"name": "a", "kind": "numeric"}, {"name": "a", "kind": "numeric"}]},
            "schema.json: feature names are empty or not unique",
        ),
        (
            {"features": [{"name": "d", "kind": "date"}, {"name": "d:month", "kind": "numeric"}]},
            "schema.json: feature 'd:month' is also a date's part",
        ),
    ],
)
def test_schema_refusals_name_the_file_and_the_key(change: dict[str, Any], says: str) -> None:
    _, doc = committed(SCHEMA_FILE)
    with pytest.raises(ContractError) as info:
        Schema.from_json(doc | change, "schema.json")
    assert str(info.value) == says
