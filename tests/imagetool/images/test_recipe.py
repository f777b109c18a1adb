"""`imagetool.images.recipe`: what the image installs and copies, from the serving plan."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from harness import REPO_ROOT
from imagetool.common import ToolError
from imagetool.images import image, recipe

ROOT = REPO_ROOT


def test_serving_plan_must_name_the_shipped_model_and_graph(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models/model.joblib").write_bytes(b"pickle bytes")
    (tmp_path / "models/model.onnx").write_bytes(b"graph bytes")
    md5 = hashlib.md5(b"pickle bytes").hexdigest()
    graph = hashlib.md5(b"graph bytes").hexdigest()
    serving = tmp_path / "models/serving.json"
    serving.write_text(json.dumps({"model": {"md5": md5}, "onnx": {"md5": graph}}))
    assert image.export_problems(tmp_path) == []
    serving.write_text(json.dumps({"model": {"md5": "0" * 32}, "onnx": {"md5": graph}}))
    [problem] = image.export_problems(tmp_path)
    assert f"made from a model with md5 {'0' * 32}, not from models/model.joblib ({md5})" in problem
    serving.write_text(json.dumps({"model": {"md5": md5}, "onnx": {"md5": "1" * 32}}))
    [problem] = image.export_problems(tmp_path)
    assert f"names a graph with md5 {'1' * 32}, not models/model.onnx ({graph})" in problem
    serving.write_text("[1, 2")
    assert "not a serving plan" in image.export_problems(tmp_path)[0]


@pytest.mark.parametrize(
    ("path", "estimator", "lock", "ships", "leaves_out"),
    [
        ("onnx", "sklearn.svm.SVC", "requirements/serve.txt", "models/model.onnx", "models/model.joblib"),
        (
            "onnx",
            "xgboost.XGBClassifier",
            "requirements/serve.txt",
            "models/model.onnx",
            "models/model.joblib",
        ),
        (
            "sklearn",
            "sklearn.svm.SVC",
            "requirements/serve-sklearn.txt",
            "models/model.joblib",
            "models/model.onnx",
        ),
        (
            "sklearn",
            "xgboost.XGBClassifier",
            "requirements/serve-xgboost.txt",
            "models/model.joblib",
            "models/model.onnx",
        ),
        (
            "sklearn",
            "lightgbm.LGBMRegressor",
            "requirements/serve-lightgbm.txt",
            "models/model.joblib",
            "models/model.onnx",
        ),
    ],
)
def test_recipe_follows_the_serving_path_and_the_models_library(
    tmp_path: Path, path: str, estimator: str, lock: str, ships: str, leaves_out: str
) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models/serving.json").write_text(json.dumps({"path": path}))
    (tmp_path / "models/metadata.json").write_text(json.dumps({"estimator": {"class": estimator}}))
    assert recipe.serve_lock(tmp_path) == lock
    files = recipe.model_files(tmp_path)
    assert ships in files
    assert leaves_out not in files
    assert {"models/serving.json", "models/metadata.json"} <= files.keys()


def test_recipe_refuses_an_unknown_serving_path(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models/serving.json").write_text(json.dumps({"path": "tensorflow"}))
    with pytest.raises(ToolError, match="path 'tensorflow' is not one of"):
        recipe.serve_lock(tmp_path)
