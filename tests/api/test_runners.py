"""api.runners: the ONNX path runs without scikit-learn, scipy, joblib or pandas."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.api.support import DEFAULT, imported_after_serving


def test_onnx_path_never_imports_scikit_learn_scipy_joblib_or_pandas() -> None:
    """They cost over a second of start-up and ~150 MB of image: the ONNX path must not need them."""
    if DEFAULT.serving_document()["path"] != "onnx":
        pytest.skip("the default model takes the exact path")
    assert imported_after_serving(DEFAULT) == []


QUIET_CASES = {
    # onnxruntime's telemetry device ID, where the home directory is read-only (as in the image)
    "onnxruntime": (
        {"HOME": "/proc", "XDG_CACHE_HOME": ""},
        "quiet_onnxruntime",
        "import onnxruntime",
        "telemetry",
    ),
    # joblib's count of physical cores, where there is no lscpu or cat (as in the image)
    "loky": (
        {"PATH": "/nonexistent"},
        "quiet_loky",
        "from sklearn.utils._openmp_helpers import _openmp_effective_n_threads as n; n()",
        "physical cores",
    ),
}


@pytest.mark.parametrize("case", QUIET_CASES, ids=list(QUIET_CASES))
def test_start_up_is_quiet_where_the_image_would_make_the_libraries_warn(case: str) -> None:
    """The runner's preparation silences the warning; without it the same process prints it."""
    env, helper, load, warning = QUIET_CASES[case]
    outputs = {}
    for prepared in (False, True):
        prepare = f"from api.runners import {helper}; {helper}(); " if prepared else ""
        proc = subprocess.run(
            [sys.executable, "-W", "default", "-c", prepare + load],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        outputs[prepared] = proc.stderr
    assert warning in outputs[False]
    assert warning not in outputs[True], outputs[True]
