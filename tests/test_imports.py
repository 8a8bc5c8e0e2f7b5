"""The import graph of gocram has no cycle, and `core` is a leaf.

Every `import` and `from ... import` of a gocram module counts, at module level or inside a
function (a function-level import only hides a cycle); imports under `if TYPE_CHECKING:` do not run
and are left out. Lazy registry entries ('module:attr' strings) are how a room names a builder in
another room without importing it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "gocram"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    hidden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return hidden


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        hidden = _type_checking_nodes(tree)
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in hidden:
                continue
            if isinstance(node, ast.Import):
                targets.update(resolve(a.name) for a in node.names if a.name.startswith("gocram"))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gocram"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(resolve(full) if full in modules else resolve(node.module))
        # a package's own __init__ runs before its submodules: that edge is not a dependency
        graph[name] = {t for t in targets if t and t != name and not name.startswith(t + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_core_imports_nothing_else_of_gocram():
    graph = import_graph()
    core = {m for m in graph if m == "gocram.core" or m.startswith("gocram.core.")}
    assert core, "gocram.core is missing"
    leaks = {m: sorted(t for t in graph[m] if t not in core) for m in core}
    assert {m: t for m, t in leaks.items() if t} == {}


def test_every_lazy_registry_entry_resolves():
    """Lazy 'module:attr' entries are checked by name here, since the graph cannot see them."""
    script = r"""
import importlib
from gocram.data.batching.batches import LAYOUTS
from gocram.models.parts import ACTIVATIONS, ATTENTIONS, LOSSES, NORMS
from gocram.train.engines import ENGINES
from gocram.train.optimizers import OPTIMIZERS
bad = []
for registry in (LAYOUTS, ACTIVATIONS, ATTENTIONS, LOSSES, NORMS, ENGINES, OPTIMIZERS):
    for name in registry.names():
        for impl in registry.impls(name):
            target = registry._entries[name][impl]
            if isinstance(target, str):
                module, _, attr = target.partition(":")
                if module.startswith("gocram.train.engines.zero"):
                    continue  # needs deepspeed, an optional extra
                if not hasattr(importlib.import_module(module), attr):
                    bad.append(f"{registry.kind} {name}/{impl}: {target}")
print("\n".join(bad))
raise SystemExit(1 if bad else 0)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
