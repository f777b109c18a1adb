from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.errors import PipelineError
from pipeline.params import load_params, parse_params


def _valid() -> dict[str, Any]:
    return {
        "prepare": {"raw_data": "data/raw/x.csv", "target": "y", "test_size": 0.25, "seed": 1},
        "train": {
            "estimator": {"class": "sklearn.linear_model.LogisticRegression", "params": {"C": 0.5}},
            "seed": 3,
        },
        "evaluate": {"positive_class": "yes"},
    }


def test_committed_params_file_is_valid(repo_root: Path) -> None:
    params = load_params(repo_root / "params.yaml")
    assert params.prepare.target == "diagnosis"


def test_parse_params_accepts_valid_sections() -> None:
    params = parse_params(_valid())
    assert params.train.estimator.class_ == "sklearn.linear_model.LogisticRegression"
    assert params.train.estimator.params == {"C": 0.5}
    assert params.prepare.missing_values == ["", "NA"]
    assert params.prepare.test_size == 0.25


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p["train"].pop("estimator"), "train.estimator: missing"),
        (lambda p: p.pop("evaluate"), "evaluate: missing"),
        (lambda p: p["prepare"].update(test_size="0.2"), "prepare.test_size"),
        (lambda p: p["prepare"].update(test_size=1.5), "prepare.test_size"),
        (lambda p: p["train"]["estimator"].pop("class"), "train.estimator.class: missing"),
        (lambda p: p["prepare"].update(max_categories=0), "prepare.max_categories"),
        (lambda p: p["train"].update(seed=True), "train.seed"),
        (lambda p: p["prepare"].update(target=""), "prepare.target"),
        (lambda p: p["train"].update(learning_rate=0.1), "train.learning_rate: unknown key"),
        (lambda p: p["prepare"].update(column_kinds={"a": "text"}), "prepare.column_kinds.a"),
    ],
    ids=[
        "missing-key",
        "missing-section",
        "string-number",
        "out-of-range",
        "no-estimator-class",
        "zero-category-limit",
        "bool-for-int",
        "empty-target",
        "unknown-key",
        "unknown-column-kind",
    ],
)
def test_parse_params_rejects_bad_values_naming_the_key(mutate: Any, expected: str) -> None:
    raw = _valid()
    mutate(raw)
    with pytest.raises(PipelineError, match=r"^params\.yaml: ") as info:
        parse_params(raw)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_load_params_rejects_invalid_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(PipelineError, match=r"params\.yaml: not valid YAML"):
        load_params(bad)


def test_load_params_rejects_non_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(PipelineError, match="expected a mapping"):
        load_params(bad)


def test_load_params_names_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"nope\.yaml: cannot read"):
        load_params(tmp_path / "nope.yaml")
