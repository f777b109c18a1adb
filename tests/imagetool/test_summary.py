"""What a user sees: `make all`'s steps and summary, BuildKit's progress made concise, and `make help`
without colour codes in a pipe."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import REPO_ROOT
from imagetool import summary
from imagetool.images import image

ROOT = REPO_ROOT

PLAIN = """\
#1 [internal] load build definition from Dockerfile
#1 DONE 0.0s
#4 [base 1/1] ADD build/base/rootfs.tar /
#4 CACHED
#11 [deps 1/1] RUN pip install
#11 0.878 Looking in links: /wheels
#11 0.881 Processing ./wheels/a.whl
#11 DONE 11.9s
#12 [runtime 2/4] COPY --from=deps /out/ /
#12 DONE 0.2s
#13 exporting to oci image format
#13 exporting layers 3.1s done
#13 DONE 4.2s
"""


def test_buildkit_progress_is_one_line_per_step_with_slow_steps_timed() -> None:
    seen: dict[str, str] = {}
    shown: set[str] = set()
    out = [line for raw in PLAIN.splitlines() for line in image.progress_lines(raw, seen, shown)]
    assert out == [
        "image:   cached  [base 1/1] ADD build/base/rootfs.tar /",
        "image:   [deps 1/1] RUN pip install",
        "image:   [deps 1/1] done in 11.9s",
        "image:   [runtime 2/4] COPY --from=deps /out/ /",
        "image:   exporting to oci image format",
        "image:   exporting to oci image format done in 4.2s",
    ]


def make_all_steps() -> list[str]:
    """`make all`'s prerequisites, as make itself reads them."""
    database = subprocess.run(["make", "-pn", "all"], cwd=ROOT, capture_output=True, text=True, check=True)
    [line] = [line for line in database.stdout.splitlines() if line.startswith("all: ")]
    return line.removeprefix("all: ").split()


def test_every_make_all_step_is_a_make_target_with_a_description() -> None:
    targets = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    steps = make_all_steps()
    assert steps[0] == "setup"
    assert steps[-1] == "image"
    for target in steps:
        [what] = re.findall(rf"^  {re.escape(target)} +(.+)$", targets, re.M)
        assert len(what) > 20


def test_make_all_runs_its_steps_in_make_and_only_the_summary_in_python() -> None:
    """No make -> Python -> make round trip: the steps are make's prerequisites, the recipe is the summary."""
    # Under `make test`, make's own MAKEFLAGS/MAKELEVEL would add "Entering directory" lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "all"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    commands = [line for line in dry.splitlines() if line.strip()]
    assert commands[-1] == "python3 -m imagetool summary"
    assert not [c for c in commands if c.startswith("make ") or " make " in c]
    assert "imagetool all" not in dry


def test_make_help_prints_no_colour_codes_into_a_pipe() -> None:
    out = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "\033[" not in out
    assert "  verify " in out


def test_make_help_groups_targets_by_workflow_in_order() -> None:
    out = subprocess.run(["make"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    headings = [line[:-1] for line in out.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headings == ["train", "serve", "image", "deploy", "develop"]
    groups = {h: out.split(f"\n{h}:\n")[1].split("\n\n")[0] for h in headings}
    placed = [("train", "repro"), ("serve", "serve"), ("image", "run"), ("image", "stop"), ("deploy", "push")]
    for heading, target in [*placed, ("develop", "test"), ("develop", "lint")]:
        assert f"  {target} " in groups[heading], (heading, target)


def test_the_summary_verb_runs_on_the_system_python_alone(tmp_path: Path) -> None:
    """`make all`'s recipe: stdlib only (-S, no site-packages), and a tree with no build says so."""
    proc = subprocess.run(
        [sys.executable, "-S", "-m", "imagetool", "summary"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "digest" in proc.stdout or "no image was built" in proc.stdout
    assert summary.summary(tmp_path) == ["    no image was built (see the output above)"]


@pytest.mark.parametrize(("locked", "verdict"), [("same", "equals image.lock"), ("other", "differs")])
def test_summary_says_digest_lock_size_and_next_commands(tmp_path: Path, locked: str, verdict: str) -> None:
    digest = "sha256:" + "a" * 64
    (tmp_path / "build/image").mkdir(parents=True)
    layers = [{"size": 30_000_000, "digest": "x", "created_by": "y"}, {"size": 28_000_000}]
    (tmp_path / "build/image/last-build.json").write_text(json.dumps({"digest": digest, "layers": layers}))
    lock_digest = digest if locked == "same" else "sha256:" + "b" * 64
    (tmp_path / "image.lock").write_text(json.dumps({"digest": lock_digest}))
    text = "\n".join(summary.summary(tmp_path))
    assert digest in text
    assert verdict in text
    assert "58 MB compressed, 2 layers" in text
    assert "make run" in text
    assert "make test" in text
