"""A stranger's CSV through the real stages (`python -m pipeline STAGE`): dialects, encodings, columns
to leave out, diagnoses that name the fix, labels as DVC writes them, any header name on the ONNX
path, and each stage's summary. Bad input: one line, exit 2, nothing written."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest

from harness import dated_csv, pipeline_workdir
from tests.integration.pipeline.test_stage_cli import (
    assert_clean_failure,
    assert_no_outputs,
    edit_params,
    run_stage,
)

pytestmark = pytest.mark.slow

RAW = "data/raw/breast_cancer.csv"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return pipeline_workdir(tmp_path)


def table(header: list[str], rows: list[list[Any]], *, delimiter: str = ",", decimal: str = ".") -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([repr(v).replace(".", decimal) if isinstance(v, float) else v for v in row])
    return out.getvalue()


def mixed_rows(n: int = 80, seed: int = 0) -> list[list[Any]]:
    """Two numbers, one category, a binary label malignant/benign."""
    rng = random.Random(seed)
    return [
        [
            round(rng.uniform(0, 10), 3),
            round(rng.gauss(5, 2), 3),
            rng.choice("uvw"),
            ("benign", "malignant")[i % 2],
        ]
        for i in range(n)
    ]


HEADER = ["radius", "texture", "site", "diagnosis"]


def write_raw(workdir: Path, text: str | bytes) -> None:
    path = workdir / RAW
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")


def prepared_column(workdir: Path, name: str, split: str = "train") -> list[str]:
    with (workdir / f"data/prepared/{split}.csv").open(newline="") as fh:
        return [row[name] for row in csv.DictReader(fh)]


def kinds(workdir: Path) -> dict[str, str]:
    schema = json.loads((workdir / "data/prepared/schema.json").read_text())
    return {f["name"]: f["kind"] for f in schema["features"]}


# --- 1. no tracebacks ------------------------------------------------------------------------


def test_a_byte_order_mark_is_read(workdir: Path) -> None:
    write_raw(workdir, b"\xef\xbb\xbf" + table(HEADER, mixed_rows()).encode())
    proc = run_stage(workdir, "prepare")
    assert proc.returncode == 0, proc.stderr
    assert kinds(workdir) == {"radius": "numeric", "texture": "numeric", "site": "categorical"}


@pytest.mark.parametrize(("count", "test_size"), [(1, 0.2), (2, 0.05)])
def test_a_class_too_small_for_both_splits_is_refused_naming_it(
    workdir: Path, count: int, test_size: float
) -> None:
    rows = mixed_rows() + [[1.0, 2.0, "u", "rare"]] * count
    write_raw(workdir, table(HEADER, rows))
    edit_params(workdir, lambda p: p["prepare"].update(test_size=test_size))
    proc = run_stage(workdir, "prepare")
    row_word = "row" if count == 1 else "rows"
    assert_clean_failure(
        proc, RAW, f"class 'rare' ({count} {row_word})", "both the training and the test split"
    )
    assert_no_outputs(workdir, "prepare")


def test_metrics_hold_no_nan_and_every_stage_prints_its_summary(workdir: Path) -> None:
    write_raw(workdir, table(HEADER, mixed_rows()))
    out = {}
    for stage in ("prepare", "train", "evaluate", "export"):
        proc = run_stage(workdir, stage)
        assert proc.returncode == 0, proc.stderr
        out[stage] = proc.stdout
        assert f"{stage}: done in " in proc.stdout
    assert "prepare: read data/raw/breast_cancer.csv: 80 rows, 4 columns" in out["prepare"]
    assert "prepare:   site: categorical" in out["prepare"]
    assert "prepare: target 'diagnosis' classes: benign 40, malignant 40" in out["prepare"]
    assert "train: fitted sklearn.linear_model.LogisticRegression on 64 rows" in out["train"]
    assert "evaluate: on 16 test rows: accuracy " in out["evaluate"]
    assert "export: serves the ONNX graph: converted by skl2onnx" in out["export"]
    text = (workdir / "reports/metrics.json").read_text()
    assert "NaN" not in text
    json.loads(text)


# --- 2. dialects -----------------------------------------------------------------------------


@pytest.mark.parametrize(("delimiter", "decimal"), [(";", ","), ("\t", "."), ("|", "."), (";", ".")])
def test_delimiter_and_decimal_comma_are_detected(workdir: Path, delimiter: str, decimal: str) -> None:
    rows = mixed_rows()
    write_raw(workdir, table(HEADER, rows, delimiter=delimiter, decimal=decimal))
    proc = run_stage(workdir, "prepare")
    assert proc.returncode == 0, proc.stderr
    assert kinds(workdir)["radius"] == "numeric"
    assert f"decimal '{decimal}'" in proc.stdout
    values = {float(v) for v in prepared_column(workdir, "texture")}
    assert values <= {r[1] for r in rows}


def test_a_latin_1_file_is_detected_and_a_wrong_encoding_names_line_and_column(workdir: Path) -> None:
    rows = mixed_rows()
    rows[5][2] = "Zürich Crème"
    write_raw(workdir, table(HEADER, rows).encode("latin-1"))
    proc = run_stage(workdir, "prepare")
    assert proc.returncode == 0, proc.stderr
    assert "encoding cp1252" in proc.stdout
    assert "Zürich Crème" in prepared_column(workdir, "site") + prepared_column(workdir, "site", "test")
    edit_params(workdir, lambda p: p["prepare"].update(encoding="utf-8"))
    proc = run_stage(workdir, "prepare")
    assert_clean_failure(proc, RAW, "line 7, column 3 ('site')", "is not utf-8", "prepare.encoding")


def test_a_ragged_row_names_its_line(workdir: Path) -> None:
    write_raw(workdir, table(HEADER, mixed_rows()) + "1,2,u,benign,extra\n")
    proc = run_stage(workdir, "prepare")
    assert_clean_failure(proc, RAW, "line 82: 5 fields, header has 4", "delimiter ','")


def test_a_one_column_header_suggests_the_delimiter(workdir: Path) -> None:
    write_raw(workdir, "a b diagnosis\n1 2 x\n")
    assert_clean_failure(run_stage(workdir, "prepare"), RAW, "no target column", "prepare.delimiter")


# --- 3. columns ------------------------------------------------------------------------------


def test_drop_columns_leaves_an_id_out_and_the_refusal_suggests_it(workdir: Path) -> None:
    rows = [[f"patient-{i}", *r] for i, r in enumerate(mixed_rows())]
    write_raw(workdir, table(["patient", *HEADER], rows))
    proc = run_stage(workdir, "prepare")
    assert_clean_failure(proc, "column 'patient' has 80 distinct values", "prepare.drop_columns: [patient]")
    edit_params(workdir, lambda p: p["prepare"].update(drop_columns=["patient"]))
    proc = run_stage(workdir, "prepare")
    assert proc.returncode == 0, proc.stderr
    assert "patient" not in kinds(workdir)
    assert "left out (prepare.drop_columns): patient" in proc.stdout
    edit_params(workdir, lambda p: p["prepare"].update(drop_columns=["nobody"]))
    assert_clean_failure(
        run_stage(workdir, "prepare"), "params.yaml: prepare.drop_columns: no column 'nobody'"
    )


def test_a_mostly_numeric_column_lists_its_other_tokens_and_the_key(workdir: Path) -> None:
    rows = mixed_rows()
    rows[3][0], rows[9][0], rows[12][0] = "n/a", "?", "?"
    write_raw(workdir, table(HEADER, rows))
    proc = run_stage(workdir, "prepare")
    assert_clean_failure(
        proc,
        RAW,
        "column 'radius': numbers except 3 cell(s) holding '?', 'n/a'",
        "(line 5)",
        "prepare.missing_values",
    )
    assert_no_outputs(workdir, "prepare")
    edit_params(workdir, lambda p: p["prepare"].update(missing_values=["", "NA", "n/a", "?"]))
    proc = run_stage(workdir, "prepare")
    assert proc.returncode == 0, proc.stderr
    assert kinds(workdir)["radius"] == "numeric"


def test_an_all_unique_whole_number_column_is_reported_as_a_possible_id(workdir: Path) -> None:
    rows = [[1000 + i, *r] for i, r in enumerate(mixed_rows())]
    write_raw(workdir, table(["order_id", *HEADER], rows))
    proc = run_stage(workdir, "prepare")
    assert proc.returncode == 0, proc.stderr
    assert "order_id: numeric: every value a number; all 80 distinct whole numbers (an ID?" in proc.stdout


def dated(workdir: Path, text: str) -> None:
    write_raw(workdir, text)
    edit_params(
        workdir, lambda p: p["prepare"].update(target="busy") or p["evaluate"].update(positive_class="yes")
    )


def test_an_iso_8601_column_is_a_date_whose_parts_the_model_takes(workdir: Path) -> None:
    dated(workdir, dated_csv())
    out = {}
    for stage in ("prepare", "train", "evaluate", "export"):
        proc = run_stage(workdir, stage)
        assert proc.returncode == 0, proc.stderr
        out[stage] = proc.stdout
    assert kinds(workdir) == {"visited": "date", "temperature": "numeric", "station": "categorical"}
    assert (
        "prepare:   visited: date: every value ISO 8601, such as '2024-01-30'; the model takes "
        "visited:days, visited:month, visited:weekday" in out["prepare"]
    )
    # The prepared CSV keeps the text as written; the model and the graph take the parts.
    assert "2024-06-29 20:32:00+02:00" in prepared_column(workdir, "visited") + prepared_column(
        workdir, "visited", "test"
    )
    assert "export: serves the ONNX graph" in out["export"]
    serving = json.loads((workdir / "models/serving.json").read_text())
    fed = sorted(f for spec in serving["onnx"]["inputs"] for f in spec["features"])
    assert fed == ["station", "temperature", "visited:days", "visited:month", "visited:weekday"]
    assert any(row["visited"] is None for row in serving["check"]["rows"])  # a gap is checked too
    metrics = json.loads((workdir / "reports/metrics.json").read_text())
    assert metrics["accuracy"] > 0.7  # weekday and month decide most labels: the parts carry them


def test_a_date_override_names_the_first_value_that_is_not_one(workdir: Path) -> None:
    text = dated_csv().replace("2024-01-30,", "30/01/2024,", 1)
    dated(workdir, text)
    edit_params(workdir, lambda p: p["prepare"].update(column_kinds={"visited": "date"}))
    proc = run_stage(workdir, "prepare")
    assert_clean_failure(
        proc, RAW, "line 2, column 'visited': '30/01/2024' is not an ISO 8601 date", "prepare.column_kinds"
    )
    assert_no_outputs(workdir, "prepare")


def test_mostly_dates_with_a_few_other_tokens_lists_them_and_the_key(workdir: Path) -> None:
    lines = dated_csv().splitlines()
    lines[3] = "unknown" + lines[3][lines[3].index(",") :]
    lines[8] = "unknown" + lines[8][lines[8].index(",") :]
    dated(workdir, "\n".join(lines) + "\n")
    proc = run_stage(workdir, "prepare")
    assert_clean_failure(
        proc,
        RAW,
        "column 'visited': ISO 8601 dates except 2 cell(s) holding 'unknown' (first: 'unknown' (line 4))",
        "prepare.missing_values",
    )
    edit_params(workdir, lambda p: p["prepare"].update(missing_values=["", "NA", "unknown"]))
    assert run_stage(workdir, "prepare").returncode == 0
    assert kinds(workdir)["visited"] == "date"


def test_a_date_whose_part_name_is_taken_is_refused(workdir: Path) -> None:
    lines = dated_csv().splitlines()
    text = "\n".join(["visited:days," + lines[0], *(f"{i}," + line for i, line in enumerate(lines[1:]))])
    dated(workdir, text + "\n")
    proc = run_stage(workdir, "prepare")
    assert_clean_failure(proc, RAW, "column 'visited' is a date, whose part 'visited:days' is also a column")


# --- 4. targets and labels -------------------------------------------------------------------


def test_a_classifier_on_a_continuous_target_is_told_to_use_a_regressor(workdir: Path) -> None:
    rows = [[*r[:3], f"{1 + i / 100:.2f}"] for i, r in enumerate(mixed_rows())]
    write_raw(workdir, table(HEADER, rows))
    proc = run_stage(workdir, "prepare")
    assert_clean_failure(proc, RAW, "column 'diagnosis'", "use a regressor")
    assert "np." not in proc.stderr


def test_positive_class_is_checked_by_prepare(workdir: Path) -> None:
    write_raw(workdir, table(HEADER, mixed_rows()))
    edit_params(workdir, lambda p: p["evaluate"].update(positive_class="Malignant"))
    proc = run_stage(workdir, "prepare")
    assert_clean_failure(
        proc, "params.yaml: evaluate.positive_class: 'Malignant' is not a label", "benign, malignant"
    )
    assert_no_outputs(workdir, "prepare")


@pytest.mark.parametrize(
    ("labels", "positive"), [(("No", "Yes"), "Yes"), (("Off", "On"), "Off"), (("0", "1"), "1")]
)
def test_labels_as_dvc_writes_them_in_params_yaml(
    workdir: Path, labels: tuple[str, str], positive: str
) -> None:
    rows = [[*r[:3], labels[i % 2]] for i, r in enumerate(mixed_rows())]
    write_raw(workdir, table(HEADER, rows))
    params = workdir / "params.yaml"
    # What `dvc exp run -S evaluate.positive_class=Yes` writes: a plain scalar, YAML 1.2.
    params.write_text(params.read_text().replace("positive_class: malignant", f"positive_class: {positive}"))
    for stage in ("prepare", "train", "evaluate"):
        proc = run_stage(workdir, stage)
        assert proc.returncode == 0, proc.stderr
    metrics = json.loads((workdir / "reports/metrics.json").read_text())
    assert set(metrics) >= {"roc_auc", "f1"}


# --- 5. any header name on the ONNX path -----------------------------------------------------


def test_any_header_name_takes_the_onnx_path_and_serving_keeps_the_names(workdir: Path) -> None:
    header = ["mean radius", "a/b", "naïve", "1st", "site name", "diagnosis"]
    rows = [[r[0], r[1], r[0] * 2, r[1] - 1, r[2], r[3]] for r in mixed_rows()]
    write_raw(workdir, table(header, rows))
    for stage in ("prepare", "train", "evaluate", "export"):
        proc = run_stage(workdir, stage)
        assert proc.returncode == 0, proc.stderr
    assert "export: serves the ONNX graph" in proc.stdout
    serving = json.loads((workdir / "models/serving.json").read_text())
    fed = sorted(f for spec in serving["onnx"]["inputs"] for f in spec["features"])
    assert fed == sorted(header[:-1])


def test_the_exact_path_prints_its_reason(workdir: Path) -> None:
    write_raw(workdir, table(HEADER, mixed_rows()))
    edit_params(
        workdir, lambda p: p["train"].update(estimator={"class": "sklearn.neighbors.NearestCentroid"})
    )
    for stage in ("prepare", "train", "evaluate", "export"):
        proc = run_stage(workdir, stage)
        assert proc.returncode == 0, proc.stderr
    assert (
        "export: serves the pickle (exact path): exact path: scikit-learn runs the pickle because"
        in proc.stdout
    )
