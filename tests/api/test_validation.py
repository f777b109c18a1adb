"""api.validation: the fast validation path never disagrees with the exact one (same batch, or it
defers); rows with more fields than features, and error reporting that stops at its cap."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.artifacts import parse_metadata
from api.batch import Batch
from api.body import load_json
from api.errors import MAX_REPORTED_ERRORS, ClientError
from api.tokens import BodyTokens
from api.validation import MAX_ABS_VALUE, InstanceParser
from contract.features import Feature
from harness import Artifacts
from tests.api.support import TestClient, assert_error, parse_peak_mib, request_cost

FEATURES = [
    Feature("a", "numeric", None, False),
    Feature("colour", "categorical", ("blue", "red"), True),
    Feature("c", "numeric", None, True),
]
NAMES = [f.name for f in FEATURES]
PARSER = InstanceParser(FEATURES, max_rows=4)

json_scalars = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.sampled_from(["red", "blue", "green", ""]),
    st.text(max_size=3),
)
values = st.one_of(json_scalars, st.lists(json_scalars, max_size=2))
named_rows = st.dictionaries(st.sampled_from([*NAMES, "x", "true"]), values, max_size=4)
positional_rows = st.lists(values, min_size=2, max_size=4)
rows = st.one_of(named_rows, positional_rows, json_scalars)
documents = st.one_of(
    st.fixed_dictionaries({"instances": st.lists(rows, max_size=5)}),
    st.dictionaries(st.sampled_from(["instances", "other"]), st.lists(rows, max_size=2), max_size=2),
    json_scalars,
)


def exact(body: bytes) -> Batch | ClientError:
    try:
        return PARSER._exact(load_json(body)[0])
    except ClientError as refused:
        return refused


def fast_path(body: bytes, parser: InstanceParser = PARSER) -> Batch | None:
    """The fast path's answer for a body, as parse() would ask it (only for strict JSON)."""
    doc, strict = load_json(body)
    return parser._fast(doc, BodyTokens.of(body)) if strict else None


def assert_same(fast: Batch, reference: Batch) -> None:
    np.testing.assert_array_equal(fast.numeric, reference.numeric)
    assert fast.numeric.dtype == np.float64
    assert [list(c) for c in fast.categorical] == [list(c) for c in reference.categorical]
    assert (fast.missing, fast.unknown, fast.rows) == (reference.missing, reference.unknown, reference.rows)


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(documents)
def test_fast_path_agrees_with_exact_path(document: Any) -> None:
    body = json.dumps(document).encode()  # stdlib: orjson cannot write ints beyond 64 bits
    fast = fast_path(body)
    reference = exact(body)
    if fast is not None:
        assert isinstance(reference, Batch), reference.problems
        assert_same(fast, reference)


cells = st.tuples(
    st.one_of(st.none(), st.floats(-MAX_ABS_VALUE, MAX_ABS_VALUE)),
    st.one_of(st.none(), st.sampled_from(["red", "blue", "green"])),
    st.one_of(st.none(), st.floats(-MAX_ABS_VALUE, MAX_ABS_VALUE)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(cells, min_size=1, max_size=4))
def test_valid_rows_take_the_fast_path(matrix: list[tuple[Any, Any, Any]]) -> None:
    named = [dict(zip(NAMES, row, strict=True)) for row in matrix]
    positional = [list(row) for row in matrix]
    for instances in (positional, named):
        fast = fast_path(orjson.dumps({"instances": instances}))
        assert fast is not None
        expected = [[math.nan if v is None else v for v in (a, c)] for a, _, c in matrix]
        np.testing.assert_array_equal(fast.numeric, np.array(expected, dtype=np.float64))
        assert list(fast.categorical[0]) == [colour for _, colour, _ in matrix]


def test_nulls_and_unknown_categories_are_counted_per_feature() -> None:
    batch = PARSER.parse(
        b'{"instances": [[1, "green", null], [null, null, 2], {"a": 3, "colour": "red", "c": null}]}'
    )
    assert batch.missing == {"a": 1, "c": 2, "colour": 1}
    assert batch.unknown == {"colour": 1}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (b'{"instances": [[1, "red", true]]}', "c", "must be a number or null, got boolean"),
        (b'{"instances": [{"a": 1, "colour": "red", "c": false}]}', "c", "got boolean"),
        (b'{"instances": [[1, "red", "3"]]}', "c", "must be a number or null, got string"),
        (b'{"instances": [[1, "red", NaN]]}', "c", "must be a finite number"),
        (b'{"instances": [[1, "red", 1e400]]}', "c", "must be a finite number"),
        (b'{"instances": [[1, 7, 1]]}', "colour", "must be a string (a category) or null, got number"),
        (b'{"instances": [[1, true, 1]]}', "colour", "got boolean"),
        (b'{"instances": [[1, ["red"], 1]]}', "colour", "got array"),
        (b'{"instances": [{"a": 1, "c": 1}]}', "colour", "is required"),
    ],
)
def test_values_of_the_wrong_type_are_refused_by_row_and_field(body: bytes, field: str, message: str) -> None:
    assert fast_path(body) is None
    with pytest.raises(ClientError) as refused:
        PARSER.parse(body)
    assert refused.value.status == 422
    assert refused.value.problems[0]["row"] == 0
    assert refused.value.problems[0]["field"] == field
    assert message in refused.value.problems[0]["message"]


def test_an_object_row_in_an_array_batch_is_not_read_as_its_keys() -> None:
    parser = InstanceParser(FEATURES[:1] + FEATURES[2:], max_rows=2)
    assert fast_path(b'{"instances": [[1, 2], {"3": 1, "4": 2}]}', parser) is None
    assert parser.parse(b'{"instances": [[1, 2]]}').numeric[0, 1] == 2.0


def test_a_string_row_is_not_read_as_its_characters() -> None:
    parser = InstanceParser([Feature(n, "categorical", ("x",), False) for n in "ab"], max_rows=2)
    with pytest.raises(ClientError):
        parser.parse(b'{"instances": ["xy"]}')


def test_single_feature_models_are_supported() -> None:
    parser = InstanceParser(FEATURES[:1], max_rows=2)
    assert parser.parse(b'{"instances": [{"a": 3}, [4]]}').numeric.tolist() == [[3.0], [4.0]]
    only_category = InstanceParser(FEATURES[1:2], max_rows=2)
    assert list(only_category.parse(b'{"instances": [{"colour": "red"}, [null]]}').categorical[0]) == [
        "red",
        None,
    ]


def parse_outcome(parser: InstanceParser, body: bytes) -> Batch | tuple[int, list[dict[str, Any]]]:
    try:
        return parser.parse(body)
    except ClientError as refused:
        return refused.status, refused.problems


def exact_outcome(parser: InstanceParser, body: bytes) -> Batch | tuple[int, list[dict[str, Any]]]:
    try:
        return parser._exact(load_json(body)[0])
    except ClientError as refused:
        return refused.status, refused.problems


def penguins_row(meta: dict[str, Any], **changes: Any) -> dict[str, Any]:
    row = {f["name"]: meta["example"][f["name"]] for f in meta["features"]}
    return row | changes


# (name, rows as a function of the metadata, whether valid): named and positional bodies of the
# penguins data (numeric and categorical columns), with the byte patterns the fast path's token
# counts look at: true/false, quotes, escapes, "r" and "a" inside strings.
PENGUIN_BODIES: list[tuple[str, Callable[[dict[str, Any]], list[Any]], bool]] = [
    ("plain", lambda m: [penguins_row(m)] * 50, True),
    ("nulls everywhere", lambda m: [penguins_row(m, island=None, bill_length_mm=None)] * 40, True),
    ("unknown categories", lambda m: [penguins_row(m, island="Atlantis", sex="unknown")] * 40, True),
    ("categories spelled true and false", lambda m: [penguins_row(m, island="true", sex="false")] * 3, True),
    ("category with an escaped quote", lambda m: [penguins_row(m, island='Bis"coe')] * 3, True),
    ("category with a unicode escape", lambda m: [penguins_row(m, island="Dr\u00e9am")] * 3, True),
    ("empty category", lambda m: [penguins_row(m, sex="")] * 3, True),
    ("keys in another order", lambda m: [dict(reversed(penguins_row(m).items()))] * 3, True),
    ("positional", lambda m: [list(penguins_row(m).values())] * 30, True),
    (
        "positional with nulls",
        lambda m: [[None if i % 2 else v for i, v in enumerate(penguins_row(m).values())]] * 9,
        True,
    ),
    ("boolean number", lambda m: [penguins_row(m), penguins_row(m, bill_length_mm=True)], False),
    ("false number", lambda m: [penguins_row(m, body_mass_g=False)] * 2, False),
    ("boolean number, category true", lambda m: [penguins_row(m, island="rar", bill_depth_mm=True)], False),
    ("string number", lambda m: [penguins_row(m), penguins_row(m, bill_length_mm="39.1")], False),
    ("string number with no r or a", lambda m: [penguins_row(m, bill_length_mm="1")], False),
    ("number category", lambda m: [penguins_row(m, island=3)], False),
    ("boolean category", lambda m: [penguins_row(m, sex=True)], False),
    ("array number", lambda m: [penguins_row(m, bill_length_mm=[1.0])] * 2, False),
    ("object number", lambda m: [penguins_row(m, bill_length_mm={})] * 2, False),
    ("unknown key", lambda m: [penguins_row(m, colour="red")], False),
    ("missing key", lambda m: [{k: v for k, v in penguins_row(m).items() if k != "sex"}], False),
    (
        "positional boolean",
        lambda m: [[True if i == 0 else v for i, v in enumerate(penguins_row(m).values())]],
        False,
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "rows", "valid"), PENGUIN_BODIES, ids=[b[0] for b in PENGUIN_BODIES])
def test_penguins_bodies_get_the_exact_paths_answer(
    trained: Callable[[str], Artifacts], name: str, rows: Callable[[dict[str, Any]], list[Any]], valid: bool
) -> None:
    artifacts = trained("penguins-forest")
    meta = artifacts.metadata_document()
    parser = InstanceParser(parse_metadata(artifacts.metadata.read_bytes(), artifacts.metadata).features, 100)
    body = orjson.dumps({"instances": rows(meta)})
    got, want = parse_outcome(parser, body), exact_outcome(parser, body)
    if valid:
        assert isinstance(got, Batch)
        assert isinstance(want, Batch)
        assert_same(got, want)
        assert fast_path(body, parser) is not None  # valid input takes the fast path
    else:
        assert not isinstance(want, Batch)
        assert got == want  # same status and problems, by row and field


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        # Within every bound before parsing: parsed, then refused row by row, 20 problems named.
        pytest.param(
            orjson.dumps({"instances": [{"x": 1}] * 5_000}), "invalid_instances", None, id="many-bad-rows"
        ),
    ],
)
def test_error_reporting_stops_at_the_cap(ready_app: Any, body: bytes, code: str, field: str | None) -> None:
    status, answer, peak_mib, cpu_seconds = request_cost(ready_app, body)
    error = answer["error"]
    assert (status, error["code"]) == (422, code)
    assert len(error["errors"]) == MAX_REPORTED_ERRORS
    if field is not None:
        assert error["errors"][0]["field"] == field
    # The body's own parse (one document) and a little more: not one error object per bad key,
    # nor a second parse. Before issue 11 these took ~17 MiB and ~190 ms each.
    parse_mib = parse_peak_mib(body)
    shown = f"{len(body) / 2**20:.2f} MiB body, peak {peak_mib:.1f} MiB (parse alone {parse_mib:.1f})"
    print(f"\n{code}: {shown}, {cpu_seconds * 1000:.0f} ms CPU")
    assert peak_mib < parse_mib + 3 * len(body) / 2**20 + 1
    assert cpu_seconds < 0.1


def test_a_row_with_far_more_keys_than_features_is_refused_with_its_count(
    client: TestClient, feature_names: list[str]
) -> None:
    row = {f"extra{i}": 0 for i in range(1000)}
    reply = client.post("/predict", json={"instances": [row]})
    error = assert_error(reply, 422, "invalid_instances")
    assert error["message"] == f"row 0: has 1000 fields; the model has {len(feature_names)} features"
    assert [e["field"] for e in error["errors"][1:]] == [f"extra{i}" for i in range(MAX_REPORTED_ERRORS - 1)]
