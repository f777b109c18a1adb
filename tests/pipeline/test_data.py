"""pipeline.data: prepared CSVs round-trip bit for bit, writes are atomic, and the chunked reader
stores numbers compactly."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from harness import REPO_ROOT
from pipeline.data import atomic_write, read_cells, read_table, write_table
from pipeline.errors import PipelineError
from pipeline.prepare import build_schema, load_raw, split
from tests.pipeline.support import csv_file, prepare_params


def test_prepared_csv_round_trips_floats_gaps_and_categories_bit_for_bit(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = "".join(
        f"{a!r},{'NA' if i % 7 == 0 else repr(b)},{'NA' if i % 5 == 0 else f'c{i % 3}'},l{i % 2}\n"
        for i, (a, b) in enumerate(rng.normal(size=(60, 2)).tolist())
    )
    table, kinds = load_raw(
        csv_file(tmp_path, "f1,f2,cat,label\n" + rows), prepare_params(), "classification"
    )
    train, _ = split(table, params=prepare_params(), stratify=True)
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
    table, kinds = load_raw(path, prepare_params(), "classification")
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

    path = csv_file(tmp_path, "n,late,inf,label\n1.5,3.50,1,x\n,4,2,y\n2,5,3,x\n7,6,4,y\n8,x,inf,x\n")
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
        load_raw(path, prepare_params(drop_columns=["late"]), "classification")


def test_one_row_chunks_give_the_same_table_as_one_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.data

    source = REPO_ROOT / "data/raw/penguins.csv"
    params = prepare_params(raw_data=str(source), target="species", missing_values=["", "NA"])
    whole, kinds = load_raw(source, params, "classification")
    monkeypatch.setattr(pipeline.data, "CHUNK_ROWS", 1)
    chunked, chunked_kinds = load_raw(source, params, "classification")
    assert kinds == chunked_kinds
    assert "categorical" in kinds.values()
    assert whole.X.equals(chunked.X)
    assert whole.y.tolist() == chunked.y.tolist()
