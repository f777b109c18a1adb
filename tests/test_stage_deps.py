"""Every dvc.yaml stage lists, as deps, each module of pipeline/ and contract/ that its code imports
(directly or through another), so changing any of them re-runs the stage and `dvc.lock` records it.
A module it leaves out could change the stage's output while `dvc repro` says "up to date"."""

from __future__ import annotations

from pathlib import Path

import yaml

from harness import REPO_ROOT
from tests.test_imports import import_graph, modules

PACKAGES = ("pipeline", "contract")


def imported_files(start: list[str], graph: dict[str, set[str]], known: dict[str, Path]) -> set[str]:
    """The files of `start` and of every module they import, transitively (and each package's
    __init__, which importing one of its modules runs)."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += graph.get(module, set())
    packages = {m.rpartition(".")[0] for m in seen} - {""}
    return {known[m].relative_to(REPO_ROOT).as_posix() for m in seen | packages if m in known}


def missing_deps(stages: dict[str, dict[str, list[str]]], root: Path) -> dict[str, list[str]]:
    graph = import_graph(root, PACKAGES)
    known = modules(root, PACKAGES)
    missing = {}
    for stage, spec in stages.items():
        deps = {str(d).split()[0] for d in spec.get("deps", [])}
        code = imported_files([f"pipeline.{stage}", "pipeline.__main__"], graph, known)
        if gaps := sorted(code - deps):
            missing[stage] = gaps
    return missing


def test_every_stage_lists_the_modules_its_code_imports() -> None:
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == {"prepare", "train", "evaluate", "export"}
    assert missing_deps(stages, REPO_ROOT) == {}


def test_a_module_a_stage_imports_but_does_not_list_is_found() -> None:
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    stages["export"]["deps"] = [d for d in stages["export"]["deps"] if d != "contract/serving.py"]
    assert missing_deps(stages, REPO_ROOT) == {"export": ["contract/serving.py"]}
