"""pipeline.train's pure functions on small in-memory data."""

from __future__ import annotations

import pickle

from pipeline.data import Table
from pipeline.features import model_input
from tests.pipeline.support import LOGISTIC, small_schema, train


def test_train_fits_through_gaps_and_separates_the_classes(table: Table) -> None:
    model = train(table, small_schema(), params=LOGISTIC)
    assert list(model.classes_) == ["neg", "pos"]
    assert (model.predict(model_input(table.X, small_schema())) == table.y).mean() > 0.9
    assert [name for name, *_ in model.named_steps["preprocess"].transformers] == ["numeric", "categorical"]


def test_train_is_deterministic_in_process(table: Table) -> None:
    a = pickle.dumps(train(table, small_schema(), params=LOGISTIC))
    b = pickle.dumps(train(table, small_schema(), params=LOGISTIC))
    assert a == b
