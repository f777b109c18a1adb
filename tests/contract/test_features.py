"""contract.features: a feature record is checked where it is, and a date's parts follow the other features
as numeric model columns."""

from __future__ import annotations

import pytest

from contract import ContractError
from contract.features import Feature, features_from_json, model_features


def test_a_dates_parts_follow_the_other_features_as_numeric_columns() -> None:
    features = (
        Feature("when", "date", None, True),
        Feature("colour", "categorical", ("blue", "red"), False),
        Feature("size", "numeric", None, False),
    )
    columns = model_features(features)
    assert [f.name for f in columns] == ["colour", "size", "when:days", "when:month", "when:weekday"]
    assert all(f.numeric and f.missing for f in columns[2:])


def test_a_feature_record_is_checked_where_it_is() -> None:
    with pytest.raises(ContractError, match=r"^m.json: features\[1\] \(c\): categories must be a list"):
        features_from_json(
            {"features": [{"name": "a", "kind": "numeric"}, {"name": "c", "kind": "categorical"}]}, "m.json"
        )
    assert Feature.from_json({"name": "a", "kind": "numeric", "categories": ["x"]}, "w").categories is None
