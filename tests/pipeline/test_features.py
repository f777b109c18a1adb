"""pipeline.features: the frame a model takes, gaps included."""

from __future__ import annotations

import numpy as np

from contract import MISSING_STRING
from pipeline.data import Table
from pipeline.features import model_input
from tests.pipeline.support import small_schema


def test_model_input_feeds_a_categorical_gap_as_the_missing_string(table: Table) -> None:
    X = model_input(table.X, small_schema())
    assert X["colour"].tolist()[0] == MISSING_STRING
    assert X["colour"].dtype == object
    assert np.isnan(X["a"].tolist()[0])
