"""Reading raw mixed-type CSVs: kinds inferred, gaps kept, bad input named; prepared CSVs round-trip."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness import REPO_ROOT
from pipeline.data import atomic_write, read_cells, read_table, write_table
from pipeline.errors import PipelineError
from pipeline.params import PrepareParams
from pipeline.prepare import build_schema, load_raw, split


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "in.csv"
    path.write_text(text)
    return path


def _params(**overrides: Any) -> PrepareParams:
    base: dict[str, Any] = {"raw_data": "in.csv", "target": "label", "test_size": 0.25, "seed": 0}
    return PrepareParams(**(base | overrides))


def test_load_raw_infers_numeric_and_categorical_columns_and_keeps_gaps(tmp_path: Path) -> None:
    path = _csv(tmp_path, "a,colour,label,b\n1,red,x,2.5\nNA,,y,-4e-3\n3,blue,x,NA\n")
    table, kinds = load_raw(path, _params(), "classification")
    assert kinds == {"a": "numeric", "colour": "categorical", "b": "numeric"}
    assert table.features == ["a", "colour", "b"]
    assert table.X["a"].dtype == np.float64
    assert math.isnan(table.X["a"][1])
    assert table.X["colour"].tolist() == ["red", None, "blue"]
    assert table.X["b"].tolist()[:2] == [2.5, -0.004]
    assert table.y.tolist() == ["x", "y", "x"]


def test_load_raw_applies_column_kind_overrides(tmp_path: Path) -> None:
    path = _csv(tmp_path, "year,label\n2007,x\n2008,y\n")
    table, kinds = load_raw(path, _params(column_kinds={"year": "categorical"}), "classification")
    assert kinds == {"year": "categorical"}
    assert table.X["year"].tolist() == ["2007", "2008"]


def test_load_raw_reads_a_numeric_target_for_regression(tmp_path: Path) -> None:
    table, _ = load_raw(_csv(tmp_path, "a,label\n1,2.5\n2,3\n"), _params(), "regression")
    assert table.y.dtype == np.float64
    assert table.y.tolist() == [2.5, 3.0]


def test_load_raw_drops_rows_without_target_only_when_asked(tmp_path: Path) -> None:
    path = _csv(tmp_path, "a,label\n1,x\n2,NA\n3,y\n")
    with pytest.raises(PipelineError, match=r"line 3, column 'label': missing target"):
        load_raw(path, _params(), "classification")
    table, _ = load_raw(path, _params(drop_missing_target=True), "classification")
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
        load_raw(_csv(tmp_path, text), _params(**overrides), "classification")
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_load_raw_rejects_text_target_for_a_regressor(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"line 3, column 'label': 'big' is not a number"):
        load_raw(_csv(tmp_path, "a,label\n1,2\n2,big\n"), _params(), "regression")


def test_load_raw_names_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"absent\.csv: cannot read"):
        load_raw(tmp_path / "absent.csv", _params(), "classification")


def test_prepared_csv_round_trips_floats_gaps_and_categories_bit_for_bit(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = "".join(
        f"{a!r},{'NA' if i % 7 == 0 else repr(b)},{'NA' if i % 5 == 0 else f'c{i % 3}'},l{i % 2}\n"
        for i, (a, b) in enumerate(rng.normal(size=(60, 2)).tolist())
    )
    table, kinds = load_raw(_csv(tmp_path, "f1,f2,cat,label\n" + rows), _params(), "classification")
    train, _ = split(table, params=_params(), stratify=True)
    schema = build_schema(table, train, kinds, "classification")
    out = tmp_path / "out" / "copy.csv"
    write_table(out, table)
    again = read_table(out, schema)
    assert again.X["f1"].to_numpy().tobytes() == table.X["f1"].to_numpy().tobytes()
    assert again.X["f2"].to_numpy().tobytes() == table.X["f2"].to_numpy().tobytes()
    assert again.X["cat"].tolist() == table.X["cat"].tolist()
    assert again.y.tolist() == table.y.tolist()
    cat = schema.features[2]
    assert (cat.kind, cat.categories, cat.missing) == ("categorical", ("c0", "c1", "c2"), True)


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.json"

    def write_then_fail() -> None:
        with atomic_write(target) as fh:
            fh.write("partial")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_then_fail()
    assert list(tmp_path.iterdir()) == []


def test_a_semicolon_decimal_comma_latin_1_csv_round_trips_bit_for_bit(tmp_path: Path) -> None:
    """The dialect-aware reader: each number is float() of its text with the comma made a point,
    and the prepared CSV reads back to the same bits."""
    rng = np.random.default_rng(1)
    values = rng.normal(size=60).tolist()
    rows = "".join(
        f"{repr(v).replace('.', ',')};{'NA' if i % 9 == 0 else 'Zürich'};l{i % 2}\n"
        for i, v in enumerate(values)
    )
    path = tmp_path / "in.csv"
    path.write_bytes(("f1;city;label\n" + rows).encode("cp1252"))
    table, kinds = load_raw(path, _params(), "classification")
    assert kinds == {"f1": "numeric", "city": "categorical"}
    assert table.X["f1"].to_numpy().tobytes() == np.asarray(values, dtype=np.float64).tobytes()
    schema = build_schema(table, table, kinds, "classification")
    out = tmp_path / "out" / "copy.csv"
    write_table(out, table)
    again = read_table(out, schema)
    assert again.X["f1"].to_numpy().tobytes() == table.X["f1"].to_numpy().tobytes()
    assert again.X["city"].tolist() == table.X["city"].tolist()


def test_chunks_store_numbers_compactly_and_read_a_column_again_when_text_comes_late(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of two rows: `late` is numbers for two chunks, then text, so it is read again as text
    (as written: "3.50", not 3.5); `n` keeps only its float64 values; `inf` stays text so its error
    can quote the cell."""
    import pipeline.data

    path = _csv(tmp_path, "n,late,inf,label\n1.5,3.50,1,x\n,4,2,y\n2,5,3,x\n7,6,4,y\n8,x,inf,x\n")
    monkeypatch.setattr(pipeline.data, "CHUNK_ROWS", 2)
    header, cells, _ = read_cells(path, missing_values=[""], keep_text=["label"])
    assert header == ["n", "late", "inf", "label"]
    assert cells["n"].text is None
    assert cells["n"].numbers is not None
    assert cells["n"].numbers.tolist()[2:] == [2.0, 7.0, 8.0]
    assert math.isnan(cells["n"].numbers[1])
    assert cells["n"].gaps.tolist() == [False, True, False, False, False]
    assert cells["late"].numbers is None
    assert cells["late"].text is not None
    assert cells["late"].text.tolist() == ["3.50", "4", "5", "6", "x"]
    assert cells["inf"].text is not None
    assert cells["inf"].text.tolist()[-1] == "inf"
    assert cells["label"].text is not None
    assert cells["label"].text.tolist() == ["x", "y", "x", "y", "x"]
    with pytest.raises(PipelineError, match=r"line 6, column 'inf': 'inf' is not a finite number"):
        load_raw(path, _params(drop_columns=["late"]), "classification")


def test_one_row_chunks_give_the_same_table_as_one_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.data

    source = REPO_ROOT / "data/raw/penguins.csv"
    params = _params(raw_data=str(source), target="species", missing_values=["", "NA"])
    whole, kinds = load_raw(source, params, "classification")
    monkeypatch.setattr(pipeline.data, "CHUNK_ROWS", 1)
    chunked, chunked_kinds = load_raw(source, params, "classification")
    assert kinds == chunked_kinds
    assert "categorical" in kinds.values()
    assert whole.X.equals(chunked.X)
    assert whole.y.tolist() == chunked.y.tolist()
