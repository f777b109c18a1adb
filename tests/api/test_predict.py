"""api.predict: the response spliced from fragments is byte for byte what orjson writes for the
objects, and rows a model cannot score are refused by index."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.predict import _prediction_objects, encode_predictions
from api.runners import Scores

numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, 1e-5, 5e-324, 1 / 3, 1e16, 0.9999999999999999]),
)
class_names = st.lists(st.text(min_size=1, max_size=6), min_size=2, max_size=4, unique=True)


def objects(version: str, classes: tuple[str, ...], scores: Scores) -> bytes:
    return orjson.dumps({"model_version": version, "predictions": _prediction_objects(classes, scores)})


@settings(max_examples=200, deadline=None)
@given(class_names, st.data())
def test_classifier_answers_are_what_orjson_writes(names: list[str], data: st.DataObject) -> None:
    classes = tuple(names)
    rows = data.draw(st.integers(1, 40))
    probabilities = data.draw(
        st.lists(
            st.lists(numbers, min_size=len(classes), max_size=len(classes)), min_size=rows, max_size=rows
        )
    )
    labels = data.draw(st.lists(st.integers(0, len(classes) - 1), min_size=rows, max_size=rows))
    scores = Scores(labels=labels, probabilities=probabilities)
    assert encode_predictions('v"1', classes, scores) == objects('v"1', classes, scores)


@settings(max_examples=100, deadline=None)
@given(st.lists(numbers, min_size=1, max_size=40))
def test_regression_answers_are_what_orjson_writes(values: list[float]) -> None:
    scores = Scores(values=values)
    assert encode_predictions("v", (), scores) == objects("v", (), scores)


@pytest.mark.parametrize("rows", [1, 2, 1000])
def test_answers_parse_to_one_prediction_per_row(rows: int) -> None:
    scores = Scores(labels=[1] * rows, probabilities=[[0.25, 0.75]] * rows)
    document = orjson.loads(encode_predictions("v", ("a", "b"), scores))
    assert document["predictions"] == [{"label": "b", "probabilities": {"a": 0.25, "b": 0.75}}] * rows


def test_rows_a_model_cannot_score_are_refused_by_index() -> None:
    from api.errors import ClientError
    from api.predict import check_finite
    from api.runners import Scores

    nan, inf = float("nan"), float("inf")
    for scores in (
        Scores(labels=[1, 0, 0, 0], probabilities=[[0.2, 0.8], [nan, nan], [0.5, 0.5], [inf, 0.0]]),
        Scores(values=[1.0, nan, 2.0, -inf]),
    ):
        with pytest.raises(ClientError) as refused:
            check_finite(scores)
        assert refused.value.status == 422
        assert [p["row"] for p in refused.value.problems] == [1, 3]
