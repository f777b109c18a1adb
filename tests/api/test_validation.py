"""The fast validation path never disagrees with the exact one: same matrix, or it defers."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.errors import ClientError
from api.validation import MAX_ABS_VALUE, InstanceParser

NAMES = ["a", "b", "c"]
PARSER = InstanceParser(NAMES, max_rows=4)

json_scalars = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
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


def exact(body: bytes) -> np.ndarray | ClientError:
    try:
        return PARSER._exact(body)
    except ClientError as refused:
        return refused


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(documents)
def test_fast_path_agrees_with_exact_path(document: Any) -> None:
    body = json.dumps(document).encode()  # stdlib: orjson cannot write ints beyond 64 bits
    fast = PARSER._fast(body)
    reference = exact(body)
    if fast is not None:
        assert isinstance(reference, np.ndarray), reference.problems
        np.testing.assert_array_equal(fast, reference)
        assert fast.dtype == np.float64


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(-MAX_ABS_VALUE, MAX_ABS_VALUE), min_size=3, max_size=3), min_size=1, max_size=4
    )
)
def test_valid_rows_take_the_fast_path(matrix: list[list[float]]) -> None:
    named = [dict(zip(NAMES, row, strict=True)) for row in matrix]
    for instances in (matrix, named):
        fast = PARSER._fast(orjson.dumps({"instances": instances}))
        assert fast is not None
        np.testing.assert_array_equal(fast, np.array(matrix, dtype=np.float64))


@pytest.mark.parametrize(
    "body",
    [
        b'{"instances": [[1, 2, true]]}',
        b'{"instances": [{"a": 1, "b": 2, "c": false}]}',
        b'{"instances": [[1, 2, null]]}',
        b'{"instances": [[1, 2, "3"]]}',
        b'{"instances": [[1, 2, NaN]]}',
        b'{"instances": [[1, 2, 1e400]]}',
    ],
)
def test_non_numbers_are_refused(body: bytes) -> None:
    assert PARSER._fast(body) is None
    with pytest.raises(ClientError) as refused:
        PARSER.parse(body)
    assert refused.value.status == 422
    assert refused.value.problems[0]["row"] == 0
    assert refused.value.problems[0]["field"] == "c"


def test_an_object_row_in_an_array_batch_is_not_read_as_its_keys() -> None:
    parser = InstanceParser(["a", "b"], max_rows=2)
    assert parser._fast(b'{"instances": [[1, 2], {"3": 1, "4": 2}]}') is None
    assert math.isclose(parser.parse(b'{"instances": [[1, 2]]}')[0, 1], 2.0)


def test_single_feature_models_are_supported() -> None:
    parser = InstanceParser(["only"], max_rows=2)
    assert parser.parse(b'{"instances": [{"only": 3}, [4]]}').tolist() == [[3.0], [4.0]]
