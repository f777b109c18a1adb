"""pipeline.prepare's pure functions: reading raw mixed-type CSVs (kinds inferred, gaps kept, bad
input named) and the seeded, stratified split."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.data import Table
from pipeline.errors import PipelineError
from pipeline.params import PrepareParams
from pipeline.prepare import load_raw, split
from tests.pipeline.support import csv_file, prepare_params


def test_split_is_seeded_stratified_and_disjoint(table: Table) -> None:
    params = PrepareParams(raw_data="x.csv", target="label", test_size=0.2, seed=3)
    train1, test1 = split(table, params=params, stratify=True)
    train2, test2 = split(table, params=params, stratify=True)
    assert train1.X.equals(train2.X)
    assert test1.X.equals(test2.X)
    assert len(train1.y) + len(test1.y) == len(table.y)
    assert len(test1.y) == 30
    assert set(test1.y) == {"pos", "neg"}
    assert np.mean(test1.y == "pos") == pytest.approx(np.mean(table.y == "pos"), abs=0.05)


def test_split_rejects_a_single_class(table: Table) -> None:
    one = Table(target="label", X=table.X, y=np.full(len(table.y), "pos"))
    params = PrepareParams(raw_data="x.csv", target="label", test_size=0.2, seed=0)
    with pytest.raises(PipelineError, match="column 'label': needs at least 2 classes"):
        split(one, params=params, stratify=True)


def test_load_raw_infers_numeric_and_categorical_columns_and_keeps_gaps(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "a,colour,label,b\n1,red,x,2.5\nNA,,y,-4e-3\n3,blue,x,NA\n")
    table, kinds = load_raw(path, prepare_params(), "classification")
    assert kinds == {"a": "numeric", "colour": "categorical", "b": "numeric"}
    assert table.features == ["a", "colour", "b"]
    assert table.X["a"].dtype == np.float64
    assert math.isnan(table.X["a"][1])
    assert table.X["colour"].tolist() == ["red", None, "blue"]
    assert table.X["b"].tolist()[:2] == [2.5, -0.004]
    assert table.y.tolist() == ["x", "y", "x"]


def test_load_raw_applies_column_kind_overrides(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "year,label\n2007,x\n2008,y\n")
    table, kinds = load_raw(path, prepare_params(column_kinds={"year": "categorical"}), "classification")
    assert kinds == {"year": "categorical"}
    assert table.X["year"].tolist() == ["2007", "2008"]


def test_load_raw_reads_a_numeric_target_for_regression(tmp_path: Path) -> None:
    table, _ = load_raw(csv_file(tmp_path, "a,label\n1,2.5\n2,3\n"), prepare_params(), "regression")
    assert table.y.dtype == np.float64
    assert table.y.tolist() == [2.5, 3.0]


def test_load_raw_drops_rows_without_target_only_when_asked(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "a,label\n1,x\n2,NA\n3,y\n")
    with pytest.raises(PipelineError, match=r"line 3, column 'label': missing target"):
        load_raw(path, prepare_params(), "classification")
    table, _ = load_raw(path, prepare_params(drop_missing_target=True), "classification")
    assert table.y.tolist() == ["x", "y"]


BAD_CSVS: dict[str, tuple[str, dict[str, Any], str]] = {
    "empty": ("", {}, "in.csv: empty file"),
    "header-only": ("a,label\n", {}, "in.csv: no data rows"),
    "no-target": ("a,b\n1,2\n", {}, "in.csv: no target column 'label'"),
    "duplicate-column": ("a,a,label\n1,2,x\n", {}, "duplicate column(s) 'a'"),
    "target-only": ("label\nx\n", {}, "no feature columns"),
    "entirely-empty-column": ("a,b,label\n1,,x\n2,NA,y\n", {}, "column 'b' is entirely empty"),
    "infinite-number": ("a,label\n1,x\n-inf,y\n", {}, "line 3, column 'a': '-inf' is not a finite number"),
    "text-in-numeric-override": (
        "a,label\n1,x\nten,y\n",
        {"column_kinds": {"a": "numeric"}},
        "line 3, column 'a': 'ten' is not a number",
    ),
    "override-unknown-column": (
        "a,label\n1,x\n",
        {"column_kinds": {"z": "numeric"}},
        "column_kinds: no column 'z'",
    ),
    "too-many-levels": (
        "id,label\n" + "".join(f"u{i},x\n" for i in range(6)),
        {"max_categories": 5},
        "column 'id' has 6 distinct values, over prepare.max_categories=5",
    ),
    "reserved-level": ("a,label\n__missing__,x\n", {}, "'__missing__' is reserved"),
    "missing-target": ("a,label\n1,x\n2,\n", {}, "line 3, column 'label': missing target"),
    "ragged-row": ("a,label\n1,x\n1,x,3,4\n", {}, "in.csv: line 3: 4 fields, header has 2"),
}


@pytest.mark.parametrize("case", BAD_CSVS, ids=list(BAD_CSVS))
def test_load_raw_rejects_bad_csv_naming_file_and_column(tmp_path: Path, case: str) -> None:
    text, overrides, expected = BAD_CSVS[case]
    with pytest.raises(PipelineError) as info:
        load_raw(csv_file(tmp_path, text), prepare_params(**overrides), "classification")
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_load_raw_rejects_text_target_for_a_regressor(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"line 3, column 'label': 'big' is not a number"):
        load_raw(csv_file(tmp_path, "a,label\n1,2\n2,big\n"), prepare_params(), "regression")


def test_load_raw_names_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"absent\.csv: cannot read"):
        load_raw(tmp_path / "absent.csv", prepare_params(), "classification")
