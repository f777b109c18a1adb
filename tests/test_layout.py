"""The README's Layout section names every folder and top-level file the repository tracks."""

from __future__ import annotations

import re
import subprocess

from harness import REPO_ROOT

# Tool plumbing a reader does not need in the layout table.
UNLISTED = {".dvc", ".dockerignore", ".dvcignore", ".gitignore", "README.md"}


def layout_section() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"^## Layout\n(.*?)^## ", readme, flags=re.S | re.M)
    assert match, "README.md has no '## Layout' section"
    return match.group(1)


def test_readme_layout_names_every_tracked_folder_and_top_level_file() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    tops = {path.split("/")[0] + ("/" if "/" in path else "") for path in tracked}
    named = set(re.findall(r"`([^`\s]+)`", layout_section()))
    # A folder counts as named when a path inside it is (`image/base.toml` names `image/`).
    missing = sorted(
        t for t in tops if t.rstrip("/") not in UNLISTED and not any(n == t or n.startswith(t) for n in named)
    )
    assert not missing, f"README Layout section does not name: {missing}"
