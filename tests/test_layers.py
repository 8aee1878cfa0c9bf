"""The package's layers, read from its source: no import runs back up a layer, and the module
import graph has no cycle. Imports are read with ``ast`` wherever they stand (module level,
inside functions, under ``TYPE_CHECKING``), and so are module names in strings (``importlib``
targets and ``"module:attr"`` registry entries), so a lazy or string import cannot hide an edge.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lda_monitor"

# Lower layers never import higher ones (README "Development"): the engine knows no measurement,
# the core and judges know no front end, the settings know no front end that reads them, the
# front ends know no command line.
LAYERS = {
    "errors": 0, "declared": 0,
    "engine": 1,
    "core": 2, "judges": 2,
    "config": 3, "sinks": 3,
    "monitor": 4, "audit": 4, "server": 4, "inspect": 4,
    "cli": 5, "demo": 5, "__main__": 5, "__init__": 5,
}
# Front ends share what they both need through the layers below, never through each other: the
# callback imports no part of the audit, the audit none of the callback, the server neither.
FRONT_ENDS = ("monitor", "audit", "server")
_NAME = re.compile(r"lda_monitor(\.\w+)+")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(name: str) -> str | None:
    """The package module ``name`` refers to (an attribute import names its module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _docstrings(tree: ast.Module) -> set[int]:
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef))]
    return {id(n.body[0].value) for n in nodes
            if n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    skip = _docstrings(tree)
    found: set[str | None] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(_resolve(a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.update(_resolve(f"{base}.{a.name}") for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            match = _NAME.fullmatch(node.value.split(":")[0])
            if match:
                found.add(_resolve(match.group(0)))
    # A module's own ancestor packages are initialised before it runs: importing from them (the
    # version, a package's re-exports) is no edge.
    ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    return {m for m in found if m and m.startswith("lda_monitor") and m != module and m not in ancestors}


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_has_a_layer():
    assert all(layer(m) is not None for m in MODULES)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_runs_up_a_layer(module):
    upward = sorted(m for m in GRAPH[module] if layer(m) > layer(module))
    assert not upward, f"{module} (layer {layer(module)}) imports a higher layer: {upward}"


def front_end_crossings(graph: dict[str, set[str]]) -> list[str]:
    """``importer -> imported`` for every import from one front end's package into another's."""

    def front_end(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 and parts[1] in FRONT_ENDS else None

    return sorted(f"{m} -> {n}" for m, imported in graph.items() for n in imported
                  if front_end(m) and front_end(n) and front_end(m) != front_end(n))


def test_no_front_end_imports_another():
    assert not front_end_crossings(GRAPH)


def test_a_crossing_between_front_ends_is_caught():
    # The edge this layout removed (the callback read the shared config file's front ends from the
    # audit's config), and its mirror image; an import within one front end is no crossing.
    graph = {"lda_monitor.monitor.callback": {"lda_monitor.audit.auditor", "lda_monitor.monitor.hygiene"},
             "lda_monitor.audit.auditor": {"lda_monitor.monitor.reference", "lda_monitor.config.audit"}}
    assert front_end_crossings(graph) == ["lda_monitor.audit.auditor -> lda_monitor.monitor.reference",
                                          "lda_monitor.monitor.callback -> lda_monitor.audit.auditor"]


def test_the_module_graph_has_no_cycle():
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(GRAPH[m]):
            if state.get(n) == 1:
                cycle = path[path.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


def test_the_walker_sees_lazy_and_string_imports():
    # The registry names its built-in judges by "module:attr" strings; callback imports lazily.
    assert "lda_monitor.judges.llm" in GRAPH["lda_monitor.judges.registry"]
    assert "lda_monitor.monitor.callback" in GRAPH["lda_monitor"]
