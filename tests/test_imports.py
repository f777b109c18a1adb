"""The import graph of the project's packages has no cycle, counting the imports inside functions
too (a cycle hidden in a function is still two modules that need each other)."""

from __future__ import annotations

import ast
from pathlib import Path

from harness import REPO_ROOT

PACKAGES = ("contract", "pipeline", "api", "imagetool", "harness")


def modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """module -> the project modules it imports (anywhere in its file)."""
    known = modules(root, packages)

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
            for target in targets:
                module = resolve(target)
                if module is not None and module != name:
                    graph[name].add(module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_project_imports_have_no_cycle() -> None:
    graph = import_graph(REPO_ROOT, PACKAGES)
    assert len(graph) > 60  # every package was read (69 modules today)
    assert cycles(graph) == []


def test_a_cycle_hidden_in_a_function_is_found(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg/__init__.py").write_text("")
    (tmp_path / "pkg/a.py").write_text("from pkg import b\n")
    (tmp_path / "pkg/b.py").write_text("def f():\n    from pkg.c import x\n")
    (tmp_path / "pkg/c.py").write_text("import pkg.a\nx = 1\n")
    (tmp_path / "pkg/d.py").write_text("from pkg import a\n")
    assert cycles(import_graph(tmp_path, ("pkg",))) == [["pkg.a", "pkg.b", "pkg.c"]]


# imagetool's layers, lowest first (imagetool/__init__.py): a module imports its own layer and the
# ones before it, never one after. A module's layer is its longest matching prefix.
IMAGETOOL_LAYERS = (
    (
        "imagetool.common",
        "imagetool.layout",
        "imagetool.minimal_root",
        "imagetool.engine",
        "imagetool.platforms",
    ),
    ("imagetool.inputs",),
    ("imagetool.engine.install",),
    ("imagetool.images",),
    ("imagetool.ship",),
    ("imagetool", "imagetool.cli", "imagetool.summary", "imagetool.__main__"),
)


def layer_of(module: str) -> int:
    matches = [
        (len(prefix), level)
        for level, prefixes in enumerate(IMAGETOOL_LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"{module} is in no layer of IMAGETOOL_LAYERS"
    return max(matches)[1]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} (layer {layer_of(module)}) imports {other} (layer {layer_of(other)})"
        for module, imported in graph.items()
        if module.startswith("imagetool")
        for other in imported
        if other.startswith("imagetool") and layer_of(other) > layer_of(module)
    )


def test_imagetool_modules_import_only_their_layer_and_the_ones_below() -> None:
    graph = import_graph(REPO_ROOT, ("imagetool",))
    assert len(graph) > 30
    assert upward_imports(graph) == []


def test_the_store_is_a_leaf_of_the_inputs() -> None:
    """inputs.store imports no other input module: fetching, re-deriving and installing sit above it."""
    imported = import_graph(REPO_ROOT, ("imagetool",))["imagetool.inputs.store"]
    assert imported <= {"imagetool.common", "imagetool.layout", "imagetool.platforms"}, imported


def test_an_upward_import_is_found() -> None:
    graph = {"imagetool.inputs.base": {"imagetool.images.recipe"}, "imagetool.images.recipe": set()}
    assert upward_imports(graph) == [
        "imagetool.inputs.base (layer 1) imports imagetool.images.recipe (layer 3)"
    ]


def test_base_and_wheels_only_read_and_check() -> None:
    """Building the base (base_build) and fetching (fetch) sit above them: they start no process and
    open no connection, and import only the pure layer below."""
    graph = import_graph(REPO_ROOT, ("imagetool",))
    pure = {"imagetool.common", "imagetool.layout", "imagetool.platforms", "imagetool.inputs.locks"}
    for module in ("imagetool.inputs.base", "imagetool.inputs.wheels"):
        assert graph[module] <= pure | {"imagetool.inputs.aptsources"}, (module, graph[module])
        tree = ast.parse((REPO_ROOT / (module.replace(".", "/") + ".py")).read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
        }
        assert not imported & {"subprocess", "urllib", "http", "socket", "shutil"}, (module, imported)
