"""api.runners: the ONNX path runs without scikit-learn, scipy, joblib or pandas."""

from __future__ import annotations

import pytest

from tests.api.support import DEFAULT, imported_after_serving


def test_onnx_path_never_imports_scikit_learn_scipy_joblib_or_pandas() -> None:
    """They cost over a second of start-up and ~150 MB of image: the ONNX path must not need them."""
    if DEFAULT.serving_document()["path"] != "onnx":
        pytest.skip("the default model takes the exact path")
    assert imported_after_serving(DEFAULT) == []
