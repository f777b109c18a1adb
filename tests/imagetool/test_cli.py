"""`python -m imagetool VERB`: one command line for the build wing, every verb in imagetool/cli.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from imagetool.cli import VERBS


def imagetool(repo_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagetool", *args], cwd=repo_root, capture_output=True, text=True, check=False
    )


def test_help_lists_every_verb_with_one_line(repo_root: Path) -> None:
    proc = imagetool(repo_root, "--help")
    assert proc.returncode == 0
    listed = re.findall(r"^  (\S+)  +\S", proc.stdout, re.M)
    assert listed == list(VERBS)


def test_one_module_owns_every_verb_and_no_other_parses_arguments(repo_root: Path) -> None:
    for name, verb in VERBS.items():
        assert verb.run.__module__ == "imagetool.cli", name
    # minimal_root keeps its own: the Dockerfile runs it as a file, without the package.
    parsing = sorted(
        path.name
        for path in (repo_root / "imagetool").glob("*.py")
        if path.name not in ("cli.py", "minimal_root.py")
        and re.search(r"ArgumentParser\(|^def main\(|^if __name__ == .__main__.:", path.read_text(), re.M)
        and path.name != "__main__.py"
    )
    assert parsing == []


@pytest.mark.parametrize("args", [[], ["no-such-verb"]], ids=["no-verb", "unknown-verb"])
def test_bad_verb_is_refused_with_usage_and_exit_2(repo_root: Path, args: list[str]) -> None:
    proc = imagetool(repo_root, *args)
    assert proc.returncode == 2
    assert "usage: python -m imagetool VERB" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (["locks"], "usage: python -m imagetool locks {check,compile}"),
        (["deploy", "bogus"], "usage: python -m imagetool deploy {check,sync}"),
        (["engine", "bogus"], "usage: python -m imagetool engine [-h]"),
    ],
    ids=["locks", "deploy", "engine"],
)
def test_a_verb_keeps_its_modules_usage_and_exit_code(repo_root: Path, args: list[str], usage: str) -> None:
    proc = imagetool(repo_root, *args)
    assert proc.returncode == 2
    assert usage in proc.stderr


def test_a_verb_passes_its_arguments_through(repo_root: Path) -> None:
    proc = imagetool(repo_root, "image", "check")
    assert proc.returncode == 0, proc.stderr
    assert "image.lock inputs match the tree" in proc.stderr


def test_run_needs_no_venv_and_prints_make_runs_command(repo_root: Path) -> None:
    """`make run` calls the system python3: the verb imports nothing beyond the standard library
    (-S: no site-packages at all), and --print shows the hardened docker command."""
    from imagetool.ship.container import HARDENED_FLAGS

    args = ["run", "--name", "x", "--port", "18001", "--tag", "t", "--print"]
    command = [sys.executable, "-S", "-m", "imagetool", *args]
    done = subprocess.run(command, cwd=repo_root, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    expected = ["docker", "run", "--rm", "--name", "x", *HARDENED_FLAGS, "-p", "127.0.0.1:18001:8000", "t"]
    assert done.stdout.split() == expected


def test_readme_layout_lists_every_verb(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    for name in VERBS:
        assert re.search(rf"^{re.escape(name)}  +\S", readme, re.M), name


def test_engine_verb_runs_the_engine_script(repo_root: Path, engine: None) -> None:
    proc = imagetool(repo_root, "engine", "status")
    assert proc.returncode == 0, proc.stderr
    assert "docker-engine: running: server " in proc.stderr
