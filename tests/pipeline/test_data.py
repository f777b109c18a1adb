from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.data import atomic_write, read_table, write_table
from pipeline.errors import PipelineError


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "in.csv"
    path.write_text(text)
    return path


def test_read_table_returns_features_in_file_order(tmp_path: Path) -> None:
    table = read_table(_csv(tmp_path, "a,label,b\n1,x,2.5\n3,y,-4e-3\n"), "label")
    assert table.features == ("a", "b")
    assert table.X.dtype == np.float64
    np.testing.assert_array_equal(table.X, [[1.0, 2.5], [3.0, -0.004]])
    assert table.y.tolist() == ["x", "y"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "in.csv: empty file"),
        ("a,label\n", "in.csv: no data rows"),
        ("a,b\n1,2\n", "in.csv: no target column 'label'"),
        ("a,label\n1,x\nabc,y\n", "in.csv: line 3, column 'a': 'abc' is not a number"),
        ("a,label\n1,x\n,y\n", "in.csv: line 3, column 'a': missing value"),
        ("a,label\nnan,x\n", "in.csv: line 2, column 'a': 'nan' is not a finite number"),
        ("a,label\n-inf,x\n", "column 'a': '-inf' is not a finite number"),
        ("a,label\n1,\n", "in.csv: line 2, column 'label': missing label"),
        ("a,label\n1,x,3\n", "in.csv: line 2: 3 fields, header has 2"),
        ("a,a,label\n1,2,x\n", "duplicate column(s) 'a'"),
        ("label\nx\n", "no feature columns"),
    ],
    ids=[
        "empty",
        "header-only",
        "no-target",
        "non-numeric",
        "missing-value",
        "nan",
        "inf",
        "missing-label",
        "ragged-row",
        "duplicate-column",
        "target-only",
    ],
)
def test_read_table_rejects_bad_csv_naming_file_and_column(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(PipelineError) as info:
        read_table(_csv(tmp_path, text), "label")
    assert expected in str(info.value)


def test_read_table_names_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"absent\.csv: cannot read"):
        read_table(tmp_path / "absent.csv", "label")


def test_write_table_round_trips_floats_bit_for_bit(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = _csv(
        tmp_path,
        "f1,f2,t\n"
        + "".join(f"{a!r},{b!r},c{i % 2}\n" for i, (a, b) in enumerate(rng.normal(size=(50, 2)).tolist())),
    )
    table = read_table(path, "t")
    out = tmp_path / "out" / "copy.csv"
    write_table(out, table)
    again = read_table(out, "t")
    assert again.X.tobytes() == table.X.tobytes()
    assert again.y.tolist() == table.y.tolist()


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.json"

    def write_then_fail() -> None:
        with atomic_write(target) as fh:
            fh.write("partial")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_then_fail()
    assert list(tmp_path.iterdir()) == []
