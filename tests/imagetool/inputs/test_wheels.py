"""`imagetool.inputs.locks` and `imagetool.inputs.wheels`: requirement locks parsed, and the wheels
checked against them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from harness import REPO_ROOT
from imagetool.common import ToolError
from imagetool.inputs import wheels
from imagetool.inputs.locks import Requirement

ROOT = REPO_ROOT


H1, H2 = "a" * 64, "b" * 64
LOCK_TEXT = f"""\
#
# pip-compile header
#
Foo_Bar==1.2 \\
    --hash=sha256:{H1} \\
    --hash=sha256:{H2}
    # via -r requirements.in
numpy==2.0 ; python_version >= "3.9" \\
    --hash=sha256:{H1}
"""


def test_requirements_lock_parses_names_versions_and_hashes() -> None:
    reqs = wheels.parse_requirements(LOCK_TEXT)
    assert reqs[0] == Requirement("foo-bar", "1.2", frozenset({H1, H2}))
    assert reqs[1].name == "numpy"
    assert reqs[1].version == "2.0"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo>=1 \\\n    --hash=sha256:" + H1, "not pinned"),
        ("foo==1\n", "no --hash"),
        ("-e .\n", "option line"),
    ],
)
def test_unlocked_requirements_are_rejected(text: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        wheels.parse_requirements(text, "requirements.txt")


def test_committed_locks_parse() -> None:
    names = {r.name for r in wheels.load_locks()}
    assert {"numpy", "onnxruntime", "uvicorn", "fastapi", "pip", "scikit-learn"} <= names
    onnx_path = {r.name for r in wheels.load_locks(names=("requirements/serve.txt",))}
    assert not {"scikit-learn", "scipy", "joblib", "pandas"} & onnx_path  # only the exact path needs them


def test_wheel_check_names_wrong_hash_missing_and_stale_files(tmp_path: Path) -> None:
    good = tmp_path / "foo_bar-1.2-py3-none-any.whl"
    good.write_bytes(b"good")
    bad = tmp_path / "numpy-2.0-cp311-cp311-manylinux_2_17_x86_64.whl"
    bad.write_bytes(b"tampered")
    stale = tmp_path / "old-0.1-py3-none-any.whl"
    stale.write_bytes(b"x")
    good_hash = hashlib.sha256(b"good").hexdigest()
    reqs = [
        Requirement("foo-bar", "1.2", frozenset({good_hash})),
        Requirement("numpy", "2.0", frozenset({H1})),
        Requirement("scipy", "1.0", frozenset({H1})),
    ]
    problems = wheels.check_wheels(reqs, tmp_path)
    text = "\n".join(problems)
    assert bad.name in text
    assert "not one of the hashes locked" in text
    assert stale.name in text
    assert "stale" in text
    assert "no wheel for scipy==1.0" in text
    assert good.name not in text
