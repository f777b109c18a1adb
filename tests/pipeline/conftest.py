"""Fixtures for the pipeline's module tests: a small two-class table with gaps (its schema and a
fitted model are in support.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the dev lock
import pytest

from pipeline.data import Table


@pytest.fixture(scope="module")
def table() -> Table:
    rng = np.random.default_rng(7)
    a = rng.normal(size=150)
    b = rng.normal(size=150)
    colour = np.where(rng.random(150) < 0.5, "red", "blue").astype(object)
    colour[::17] = None
    a[::13] = np.nan
    score = np.nan_to_num(a) + 0.5 * b + np.where(colour == "red", 1.0, -1.0)
    X = pd.DataFrame({"a": a, "b": b, "colour": pd.Series(colour, dtype=object)})
    return Table(target="label", X=X, y=np.where(score > 0, "pos", "neg").astype(np.str_))
