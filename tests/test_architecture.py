"""The package layering of docs/architecture.md, checked on every import in src/
(module level and inside functions alike): no import cycle between modules, and no
import from a lower layer to a higher one."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "ecomharness"

# Lowest first. A module may import from its own layer and those below it.
LAYERS = [
    {"__init__", "errors", "util", "resources", "hookspecs"},
    {"plugins", "registry", "builtin"},
    {"metrics"},
    {"formats"},
    {"tasks", "taskdata"},
    {"evaluation"},
    {"gate", "report"},
    {"select"},
    {"data"},
    {"train"},
    {"plan"},
    {"demo"},
    {"testing"},
    {"cli"},
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        found[".".join(parts).removesuffix(".__init__")] = path
    return found


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ecomharness"):
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            graph[module].update(n for n in names if n in modules and n != module)
    return graph


def _layer(module: str) -> int:
    unit = module.split(".")[1] if "." in module else "__init__"
    for number, layer in enumerate(LAYERS):
        if unit in layer:
            return number
    raise AssertionError(f"{module}: its package {unit!r} has no layer in LAYERS (add it, and to docs/architecture.md)")


def test_no_import_goes_up_a_layer():
    graph = _imports(_modules())
    upward = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if _layer(b) > _layer(a))
    assert upward == []


def test_no_import_cycle():
    graph = _imports(_modules())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in list(_modules()):
        if module not in index:
            visit(module)
    assert cycles == []


def test_the_layers_match_the_architecture_document():
    text = (SRC.parent.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    for layer in LAYERS:
        for unit in layer - {"__init__"}:
            assert f"`{unit}" in text, f"docs/architecture.md does not describe {unit}"
