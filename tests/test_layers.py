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
# the core and judges know no front end, the front ends know no command line.
LAYERS = {
    "errors": 0,
    "engine": 1,
    "core": 2, "judges": 2, "config_file": 2,
    "monitor": 3, "audit": 3, "sinks": 3, "server": 3, "inspect": 3,
    "cli": 4, "demo": 4, "__main__": 4, "__init__": 4,
}
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
