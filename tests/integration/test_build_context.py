"""The build context is checked again when BuildKit is done: a file changed while it ran (after the
inputs were hashed, before the build ended) fails the build, naming the file, and leaves no image."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import copy_repo
from imagetool.common import ToolError
from imagetool.images import image


def test_context_changes_name_a_file_changed_after_the_inputs_were_hashed(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo", with_outputs=True)
    inputs = image.current_inputs(repo)
    assert image.context_changes(repo, inputs) == []  # the control: nothing changed, nothing named
    with (repo / "api/__init__.py").open("a") as fh:
        fh.write("# changed while BuildKit was reading the context\n")
    [change] = image.context_changes(repo, inputs)
    assert change.startswith("source_tree_sha256: ")
    assert "api/__init__.py (changed)" in change


@pytest.mark.docker
def test_a_build_whose_context_changed_while_it_ran_fails_and_leaves_no_image(
    repo_copy: Callable[[], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real build in a repo copy; the file changes once BuildKit has finished reading the context
    and before buildx() ends, the moment the old check (a label compared with the value it was set
    from) could not see."""
    repo = repo_copy()
    real_buildx = image._run_buildx

    def change_during_the_build(*args: Any, **kwargs: Any) -> tuple[int, list[str]]:
        result = real_buildx(*args, **kwargs)
        with (repo / "contract/__init__.py").open("a") as fh:
            fh.write("# changed during the build\n")
        return result

    monkeypatch.setattr(image, "_run_buildx", change_during_the_build)
    dest = repo / "build/image/lockstep.oci.tar"
    with pytest.raises(ToolError) as refused:
        image.buildx(repo, image.current_inputs(repo), dest, no_cache=False)
    assert "the build context changed during the build" in str(refused.value)
    assert "contract/__init__.py (changed)" in str(refused.value)
    assert not dest.exists()
    assert list(dest.parent.glob("*.tmp")) == []
