"""`imagetool.images.image`: the image's inputs, their differences, image.lock and the build context."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest

from harness import REPO_ROOT
from imagetool import layout, platforms
from imagetool.common import ToolError
from imagetool.images import image, recipe
from imagetool.images.image_lock import INPUT_MEANING, tree_sha256, validate_record

ROOT = REPO_ROOT


def test_preflight_reads_dvc_lock_through_the_contract(tmp_path: Path) -> None:
    (tmp_path / "dvc.lock").write_text("stages: [not, a, mapping]\n")
    with pytest.raises(ToolError, match=r"dvc.lock has no 'stages' mapping"):
        image.model_md5_problems(tmp_path)


def _inputs(**over: object) -> dict[str, object]:
    sources = {"api/a.py": "1" * 64, "Dockerfile": "2" * 64}
    d: dict[str, object] = {
        "base_lock_sha256": "b" * 64,
        "requirements_sha256": "r" * 64,
        "model_md5": "m" * 32,
        "sources": sources,
        "source_tree_sha256": tree_sha256(sources),
        "source_date_epoch": 1,
        "platform": "linux/amd64",
        "compression": "zstd",
    }
    d.update(over)
    return d


def test_input_differences_explain_what_moved() -> None:
    locked = _inputs()
    new_sources = {"api/a.py": "9" * 64, "Dockerfile": "2" * 64, "api/b.py": "3" * 64}
    now = _inputs(
        model_md5="n" * 32,
        sources=new_sources,
        source_tree_sha256=tree_sha256(new_sources),
    )
    diffs = "\n".join(image.input_differences(locked, now))
    assert "a changed model" in diffs
    assert "api/a.py (changed)" in diffs
    assert "api/b.py (added)" in diffs
    assert "base" not in diffs


def test_equal_inputs_have_no_differences() -> None:
    assert image.input_differences(_inputs(), _inputs()) == []


def test_builder_is_not_an_input_of_the_digest() -> None:
    assert "builder" not in INPUT_MEANING
    assert "builder" not in image.current_inputs()


def test_final_stage_has_nothing_builders_render_differently() -> None:
    """ARG, LABEL and EXPOSE in the final stage put builder-specific text into the config's history."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    final = dockerfile[dockerfile.rindex("\nFROM ") :]
    instructions = {ln.split()[0] for ln in final.splitlines() if ln and not ln.startswith((" ", "#"))}
    assert not instructions & {"ARG", "LABEL", "EXPOSE"}


def test_committed_image_lock_is_well_formed() -> None:
    lock = validate_record(json.loads((ROOT / "image.lock").read_text()))
    assert (
        lock["inputs"]["source_date_epoch"]
        == json.loads((ROOT / "image/base.lock.json").read_text())["source_date_epoch"]
    )


def test_image_lock_inputs_match_the_tree() -> None:
    lock = json.loads((ROOT / "image.lock").read_text())
    diffs = image.input_differences(lock["inputs"], image.current_inputs())
    assert diffs == [], "image.lock is stale; run `make lock-image`"


def test_dockerignore_is_an_allow_list_of_the_image_inputs() -> None:
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*"
    allowed = {ln[1:] for ln in lines if ln.startswith("!")}
    assert allowed == {
        "api",
        "contract",
        "imagetool/minimal_root.py",
        *recipe.MODEL_CONTEXT,
        "dvc.lock",
        "requirements/serve*.txt",  # layout.SERVE_LOCKS: the Dockerfile picks recipe.SERVE_LOCK
        # every platform's base and wheels (imagetool/platforms.py), and nothing else of build/
        *(p.rootfs().relative_to(ROOT).as_posix() for p in platforms.ALL),
        *(f"{p.wheels().relative_to(ROOT).as_posix()}/*.whl" for p in platforms.ALL),
    }
    assert all(fnmatch.fnmatch(lock, "requirements/serve*.txt") for lock in layout.SERVE_LOCKS)


def test_source_files_skip_bytecode_and_hidden_files(tmp_path: Path) -> None:
    (tmp_path / "api/__pycache__").mkdir(parents=True)
    (tmp_path / "api/__pycache__/x.cpython-311.pyc").write_bytes(b"")
    (tmp_path / "api/x.py").write_text("")
    (tmp_path / "api/.swp").write_text("")
    assert image._context_files(tmp_path, "api") == ["api/x.py"]


def test_make_image_says_whether_its_digest_is_the_locked_one(tmp_path: Path) -> None:
    locked = json.loads((ROOT / "image.lock").read_text())["digest"]
    assert image.compare_with_lock(locked).startswith("image: digest equals")
    other = "sha256:" + "0" * 64
    assert f"differs from image.lock ({locked})" in image.compare_with_lock(other)
    bad = tmp_path / "image.lock"
    bad.write_text("{")
    assert "cannot compare" in image.compare_with_lock(locked, bad)
