"""The package's own structure: no two modules import each other, directly
or through others (imports under ``if TYPE_CHECKING:`` aside, as they never
run), and no module reaches into another module's private names."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "intricate_py"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _statements(tree: ast.AST):
    """Every import statement that runs, at any depth (TYPE_CHECKING blocks left out)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node


def _target(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + (node.module.split(".") if node.module else []))


def _defining(package: str, name: str) -> str:
    """The module that defines ``name`` imported from ``package`` (following its re-exports)."""
    if f"{package}.{name}" in MODULES:
        return f"{package}.{name}"
    if package not in MODULES or not _is_package(package):
        return package
    for node in ast.parse(MODULES[package].read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            source = _target(package, node)
            if source in MODULES and source != package:
                real = next(a.name for a in node.names if (a.asname or a.name) == name)
                return _defining(source, real) if _is_package(source) else source
    return package


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        edges = set()
        for node in _statements(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in MODULES)
                continue
            target = _target(module, node)
            if target.split(".")[0] != "intricate_py":
                continue
            edges.update(_defining(target, a.name) for a in node.names)
        graph[module] = {m for m in edges if m in MODULES and m != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_resolves_names_to_the_modules_that_define_them():
    graph = import_graph()
    assert "intricate_py.layers.base" in graph["intricate_py.plan"]  # Context, through layers/__init__
    assert "intricate_py.saving.layer_files" in graph["intricate_py.layers.base"]  # Layer.save, in a function
    assert "intricate_py.model" not in graph["intricate_py.callbacks"]  # under TYPE_CHECKING only


def test_no_two_modules_import_each_other():
    assert cycles(import_graph()) == []


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for module, path in MODULES.items():
        for node in _statements(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and _target(module, node).startswith("intricate_py"):
                offenders += [f"{module}: {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")
                              and f"{_target(module, node)}.{a.name}" not in MODULES]
    assert offenders == []
